"""`compressor check`: the deployment gate (greedy output in a runtime vs the tool's own fp32 reference)."""

import json
import shutil
import subprocess
import sys
import time

import pytest

from compressor.core.errors import CheckFailed, UserError
from compressor.export import check
from compressor.export.check import check_output, require_pass
from compressor.export.parity import PROMPTS, compare
from repo import REPO_ROOT
from compressor.pipeline import apply_recipe
from compressor.recipe import load_recipe
from compressor.runtimes.vllm_runtime import vllm_python
from cli_runner import run_cli

ROOT = REPO_ROOT
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))




@pytest.mark.parametrize("recipe_path", RECIPES, ids=lambda p: p.stem)
def test_gallery_recipe_output_passes_transformers_check(recipe_path, tiny_dir, tmp_path):
    recipe = load_recipe(recipe_path)
    recipe.model.id = str(tiny_dir)
    recipe.eval.enabled = False
    for stage in recipe.stages:
        if stage.stage == "drop_layers" and stage.count:
            stage.count = min(stage.count, 2)  # the tiny models have 4 layers; SmolLM2's recipe drops 4 of 30
        if stage.stage == "quantize":
            stage.calibration.samples = min(stage.calibration.samples, 4)  # GPTQ/SmoothQuant: the format is the point
            stage.calibration.chat_template = False  # the tiny byte tokenizer has no chat template
        if stage.stage == "heal":
            stage.steps = min(stage.steps, 2)  # the shapes are the point; distilling a random model only moves near-ties
    out = tmp_path / recipe_path.stem
    apply_recipe(recipe, str(recipe_path), out_dir=out, evaluate=False)

    result = check_output(out, "transformers")
    assert result["passed"], result["reasons"]
    assert result["runtime_info"]["versions"]["transformers"] == "4.57.3"
    rows = result["prompts"]
    assert [r["prompt"] for r in rows] == list(PROMPTS) and all(r["prompt_ids_match"] for r in rows)
    summary = result["summary"]
    print(f"\n{recipe_path.stem}/{tiny_dir.name}: {result['runtime_info']['dtype']} agreement {summary['agreement']} "
          f"prefix {summary['prefix_agreement']} logits diff {summary['logits_max_abs_diff']}")
    assert summary["prefix_agreement"] >= 0.5


def _copy(tiny, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(tiny, out / "model")
    return out


def test_config_that_does_not_match_the_weights_fails(tmp_path, tiny_llama_dir):
    out = _copy(tiny_llama_dir, tmp_path)
    config_path = out / "model" / "config.json"
    config = json.loads(config_path.read_text())
    config["num_hidden_layers"] = 3  # transformers only warns and ignores layer 3's weights
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckFailed, match=r"fails the folder check: .*the weights hold decoder layers 4 \(0..3\) "
                                          r"but config.json's num_hidden_layers is 3") as info:
        check_output(out, "transformers")
    assert "\n" not in str(info.value)


def test_corrupt_weights_fail_with_one_line(tmp_path, tiny_exaone4_dir):
    out = _copy(tiny_exaone4_dir, tmp_path)
    weights = out / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(CheckFailed, match=r"fails the folder check: .*model.safetensors: truncated \(1000 bytes") as info:
        check_output(out, "transformers")
    assert "\n" not in str(info.value)


def test_unknown_runtime_and_missing_folder(tmp_path, tiny_llama_dir):
    with pytest.raises(UserError, match=r"unknown runtime 'tensorrt' \(known: transformers, vllm, onnxruntime\)"):
        check_output(tiny_llama_dir, "tensorrt")
    with pytest.raises(UserError, match="neither an output folder"):
        check_output(tmp_path, "transformers")


def _fake_runner(shift_from: int, tokenize=None):
    """A runtime that generates the reference's ids up to `shift_from`, then other ids."""
    def run(folder, prompts, prompt_ids, max_tokens):
        ref = check.reference(folder, prompts, max_tokens)
        runs = [{"token_ids": r["token_ids"][:shift_from] + [(t + 1) % 200 for t in r["token_ids"][shift_from:]],
                 "first_logits": r["first_logits"] + 0.25} for r in ref["runs"]]
        ids = [tokenize(p) if tokenize else p for p in prompt_ids]
        return {"runs": runs, "texts": ref["texts"], "text_prompt_token_ids": ids, "dtype": "float16",
                "load_s": 0.0, "versions": {"transformers": "9.9"}}
    return run


def test_early_divergence_and_tokenizer_drift_fail(monkeypatch, tiny_llama_dir):
    monkeypatch.setitem(check.RUNNERS, "transformers", _fake_runner(4))
    result = check_output(tiny_llama_dir, "transformers", max_tokens=8)
    row = result["prompts"][0]
    assert row["prefix_match"] == 4 and row["prefix_agreement"] == 0.5 and row["logits_max_abs_diff"] == 0.25
    assert row["agreement"] == 0.5
    assert result["summary"]["prefix_agreement"] == 0.5 and result["passed"]  # the threshold is inclusive
    monkeypatch.setitem(check.RUNNERS, "transformers", _fake_runner(2))
    result = check_output(tiny_llama_dir, "transformers", max_tokens=8)
    assert result["reasons"] == ["mean prefix agreement 0.25 < 0.50 (greedy tokens match the reference's for too short)"]
    with pytest.raises(CheckFailed, match=r": fails the transformers check: mean prefix agreement 0\.25 < 0\.50"):
        require_pass(result)
    assert check_output(tiny_llama_dir, "transformers", max_tokens=8, min_agreement=0.2)["passed"]

    monkeypatch.setitem(check.RUNNERS, "transformers", _fake_runner(8, tokenize=lambda ids: [0] + ids))
    result = check_output(tiny_llama_dir, "transformers", max_tokens=8)
    assert len(result["reasons"]) == len(PROMPTS)
    assert result["reasons"][0].startswith("transformers 9.9 tokenizes prompt 1 ('The capital of France is') differently")


def test_compare_counts_positions_and_prefix():
    import torch

    ref = {"runs": [{"token_ids": [1, 2, 3, 4], "first_logits": torch.zeros(5)}], "texts": ["a"],
           "prompt_token_ids": [[7, 8]]}
    got = {"runs": [{"token_ids": [1, 9, 3], "first_logprobs": {"1": -1.0, "3": -2.0}}], "texts": ["b"],
           "text_prompt_token_ids": [[7, 8]]}
    [row] = compare(["p"], ref, got, 4)
    assert row["agreement"] == 0.5 and row["prefix_match"] == 1 and row["prefix_agreement"] == 0.25
    log_uniform = float(torch.log(torch.tensor(1 / 5)))
    assert row["logprobs_max_abs_diff"] == pytest.approx(max(abs(-1.0 - log_uniform), abs(-2.0 - log_uniform)), abs=1e-4)


def test_cli_check(monkeypatch, capsys, tiny_llama_dir, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, "check", str(tiny_llama_dir), "--runtime", "transformers",
                             "--max-tokens", "8", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["passed"] and result["summary"]["agreement"] == 1.0 and result["max_tokens"] == 8

    monkeypatch.setitem(check.RUNNERS, "transformers", _fake_runner(1))
    code, out, err = run_cli(monkeypatch, capsys, "check", str(tiny_llama_dir), "--runtime", "transformers",
                             "--max-tokens", "8")
    assert code == 2 and "FAIL" in err and "prefix match" in err
    assert err.strip().splitlines()[-1].startswith("error: ") and "mean prefix agreement 0.12 < 0.50" in err

    broken = _copy(tiny_llama_dir, tmp_path)
    (broken / "model" / "model.safetensors").write_bytes(b"not safetensors")
    code, _, err = run_cli(monkeypatch, capsys, "check", str(broken), "--runtime", "transformers")
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: ") and "not a readable safetensors file" in err


@pytest.mark.e2e
@pytest.mark.skipif(vllm_python() is None, reason="no .venv-vllm: run `make install-vllm`")
# drop-layers and the bf16 cast reach vLLM through the minitron recipe (tests/test_structural_vllm.py): each case
# here costs an engine start
@pytest.mark.parametrize("recipe", ["fp16", "prune-heads", "prune-mlp", "reduce-hidden"])
def test_smollm2_recipes_pass_the_vllm_check(recipe, tmp_path):
    out = tmp_path / recipe
    subprocess.run([sys.executable, "-m", "compressor.cli", "apply", str(ROOT / f"recipes/{recipe}.yaml"),
                    "--out", str(out), "--no-eval"], check=True, cwd=ROOT)
    start = time.perf_counter()
    # --eager: vLLM skips compiling its graphs (engine start ~2x faster here, same tokens)
    done = subprocess.run([sys.executable, "-m", "compressor.cli", "check", str(out), "--runtime", "vllm", "--eager",
                           "--json"], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    assert done.stdout, done.stderr
    result = json.loads(done.stdout)
    rows = ", ".join(f"{r['agreement']:.2f}/{r['prefix_match']}/{r.get('logprobs_max_abs_diff')}"
                     for r in result["prompts"])
    print(f"\nvLLM {recipe}: {result['summary']} per prompt (agreement/prefix/logprob diff) {rows}; "
          f"dtype {result['runtime_info']['dtype']}, load {result['runtime_info']['load_s']} s, {seconds:.0f} s")
    assert done.returncode == 0 and result["passed"], done.stderr[-2000:]
    assert all(r["prompt_ids_match"] for r in result["prompts"])
    assert result["versions"]["vllm"]
