"""The vLLM runtime (CPU build in .venv-vllm, `make install-vllm`): skipped with a reason where absent."""

import json
import subprocess
import sys

import pytest

from repo import REPO_ROOT
from compressor.runtimes.vllm_runtime import vllm_python

ROOT = REPO_ROOT
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(vllm_python() is None, reason="no .venv-vllm: run `make install-vllm` (CI does)"),
]


@pytest.fixture(scope="module")
def fp16_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("vllm") / "fp16"
    subprocess.run([sys.executable, "-m", "compressor.cli", "apply", str(ROOT / "recipes/fp16.yaml"),
                    "--out", str(out), "--no-eval"], check=True, cwd=ROOT)
    return out


def test_eval_fp16_in_vllm_scores_against_the_source(fp16_out):
    done = subprocess.run([sys.executable, "-m", "compressor.cli", "eval", str(fp16_out), "--runtime", "vllm",
                           "--suite", "quick", "--runs", "3", "--prompt-tokens", "64", "--new-tokens", "16",
                           "--eager", "--json"], check=True, cwd=ROOT, capture_output=True, text=True)
    ev = json.loads(done.stdout)["eval"]
    assert ev["runtime"] == "vllm" and ev["settings"]["engine"]["enforce_eager"] is True  # started eager: ~2x sooner
    for key in ("perf_norm", "speed_norm", "score"):
        assert isinstance(ev[key], float)
    model = ev["model"]
    assert model["tpt_ms"] > 0 and model["latency"]["1"]["source"] == "vllm request metrics"
    assert model["tasks"]["minimal_pairs"]["acc,none"] > 0.6  # the real model, not chance
    assert 0.85 < ev["perf_norm"] < 1.15
