"""Structurally edited models load and generate in vLLM (CPU build in .venv-vllm): a tiny EXAONE-4 with
every width edit at once, and the minitron recipe on SmolLM2 (its heal and calibration shortened: the vLLM check is about
the shapes, which healing does not change). The other SmolLM2 recipes run in tests/test_check.py."""

import json
import subprocess
import sys

import pytest
import yaml

from compressor.models.tiny import save_tiny
from repo import REPO_ROOT
from compressor.runtimes.vllm_runtime import vllm_python

ROOT = REPO_ROOT
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(vllm_python() is None, reason="no .venv-vllm: run `make install-vllm` (CI does)"),
]


def apply_and_check(recipe: dict, tmp_path):
    path = tmp_path / f"{recipe['name']}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    out = tmp_path / recipe["name"]
    subprocess.run([sys.executable, "-m", "compressor.cli", "apply", str(path), "--out", str(out), "--no-eval"],
                   check=True, cwd=ROOT)
    # --eager: vLLM skips compiling its graphs (engine start ~2x faster here, same tokens)
    done = subprocess.run([sys.executable, "-m", "compressor.cli", "check", str(out), "--runtime", "vllm", "--eager",
                           "--json"], cwd=ROOT, capture_output=True, text=True)
    assert done.stdout, done.stderr[-2000:]
    result = json.loads(done.stdout)
    print(f"\nvLLM {recipe['name']}: {result['summary']}, dtype {result['runtime_info']['dtype']}")
    assert done.returncode == 0 and result["passed"], done.stderr[-2000:]
    assert all(r["prompt_ids_match"] for r in result["prompts"])
    return out, json.loads((out / "model" / "config.json").read_text())


def test_tiny_exaone4_with_heads_mlp_and_hidden_pruned_runs_in_vllm(tmp_path):
    # head_dim 64 as in EXAONE-4.0 (the fixtures have 16); 8 heads in 4 KV groups
    source = save_tiny("exaone4", tmp_path / "src", layers=4, hidden=512, heads=8, kv_heads=4, ffn=1024)
    calibration = {"samples": 4, "seq_len": 64}
    recipe = {"name": "exaone4-width", "model": str(source), "stages": [
        {"stage": "prune_heads", "keep": 4, "calibration": calibration},
        {"stage": "prune_mlp", "intermediate_size": 768, "calibration": calibration},
        {"stage": "reduce_hidden", "hidden_size": 448, "calibration": calibration}]}  # fp32: exact agreement
    _, config = apply_and_check(recipe, tmp_path)
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (4, 2, 64)
    assert (config["intermediate_size"], config["hidden_size"]) == (768, 448)


def test_smollm2_minitron_recipe_runs_in_vllm(tmp_path):
    recipe = yaml.safe_load((ROOT / "recipes" / "minitron.yaml").read_text())
    for stage in recipe["stages"]:
        if stage["stage"] == "heal":
            stage.update(steps=2, batch=1, seq_len=64)
        if "calibration" in stage:
            stage["calibration"].update(samples=4, seq_len=64)
    _, config = apply_and_check(recipe, tmp_path)
    assert config["model_type"] == "llama"
