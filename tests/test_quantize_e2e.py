"""recipes/w8a8.yaml on the bundled SmolLM2-135M: an int8 checkpoint that vLLM (CPU build) loads and runs."""

import pytest

from compressor.export.check import check_output
from compressor.export.target_rules import ModelDir
from repo import REPO_ROOT
from compressor.pipeline import apply_recipe
from compressor.recipe import load_recipe
from compressor.runtimes.vllm_runtime import vllm_python

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def smollm2_w8a8(tmp_path_factory):
    out = tmp_path_factory.mktemp("smollm2") / "w8a8"
    report = apply_recipe(load_recipe(REPO_ROOT / "recipes/w8a8.yaml"), "recipes/w8a8.yaml", out_dir=out,
                          evaluate=False)
    return out, report


def test_smollm2_w8a8_is_stored_in_int8(smollm2_w8a8):
    out, report = smollm2_w8a8
    model = ModelDir(out / "model")
    linears = {k: v for k, v in model.tensors.items() if k.endswith("proj.weight")}
    assert len(linears) == 30 * 7 and {v["dtype"] for v in linears.values()} == {"I8"}
    assert model.tensors["model.embed_tokens.weight"]["dtype"] == "BF16" and "lm_head.weight" not in model.tensors
    # bf16 would be half the fp32 source; int8 Linears (the embedding stays bf16) take it to ~0.6 of that
    assert report["model"]["size_mb"] < 0.65 * report["source"]["size_mb"] / 2


@pytest.mark.skipif(vllm_python() is None, reason="no .venv-vllm: run `make install-vllm`")
def test_smollm2_w8a8_loads_and_generates_in_vllm(smollm2_w8a8):
    """vLLM's int8 kernels and transformers' fp32 emulation quantize activations differently: both are faithful
    (quick-suite word ppl 116 in vLLM, 120 in the bf16 emulation, 112 unquantized) but greedy paths part at
    near-ties within a few tokens on a 135M model (mean prefix agreement 0.37-0.60 seen), hence the lower bar."""
    out, _ = smollm2_w8a8
    result = check_output(out, "vllm", min_agreement=0.25, eager=True)
    rows = result["prompts"]
    print(f"\nvLLM W8A8: {result['summary']}, dtype {result['runtime_info']['dtype']}, load "
          f"{result['runtime_info']['load_s']} s; prefix per prompt {[r['prefix_match'] for r in rows]}; "
          f"{rows[0]['runtime_text']!r}")
    assert result["passed"], result["reasons"]
    assert all(row["prompt_ids_match"] for row in rows)
    assert result["runtime_info"]["dtype"] == "bfloat16" and result["versions"]["vllm"]
    assert rows[0]["runtime_text"].startswith(" Paris")  # "The capital of France is"
    assert rows[3]["runtime_text"].startswith(" 5, 6, 7, 8")  # "1, 2, 3, 4,"
