"""End to end on the bundled SmolLM2-135M: the main job, reload, generate, package."""

import json
import subprocess
import sys
import zipfile

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from compressor.models.sources import content_hash, resolve_source
from repo import REPO_ROOT
from compressor.pipeline import apply_recipe
from compressor.recipe import load_recipe

pytestmark = pytest.mark.e2e
ROOT = REPO_ROOT


def greedy(folder, prompt="The capital of Italy is", new_tokens=8) -> str:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=new_tokens, do_sample=False)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:])


@pytest.fixture(scope="module")
def fp16_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "fp16"
    source = resolve_source("builtin:smollm2-135m")
    before = content_hash(source.path)
    subprocess.run([sys.executable, "-m", "compressor.cli", "apply", str(ROOT / "recipes/fp16.yaml"),
                    "--out", str(out), "--no-eval"], check=True, cwd=ROOT)
    assert content_hash(source.path) == before
    return out


def test_apply_fp16_reloads_and_generates(fp16_out):
    config = json.loads((fp16_out / "model" / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert "Rome" in greedy(fp16_out / "model")


def test_package_fp16_for_lg_aimers(fp16_out, tmp_path):
    subprocess.run(["bash", str(ROOT / "create_submit.sh"), str(fp16_out)], check=True, cwd=ROOT,
                   env={"PATH": f"{sys.prefix}/bin:/usr/bin:/bin"})
    with zipfile.ZipFile(fp16_out / "submit.zip") as archive:
        names = archive.namelist()
        assert all(name.startswith("model/") for name in names)
        assert "model/model.safetensors" in names
        config = json.loads(archive.read("model/config.json"))
        archive.extractall(tmp_path)
    assert config["transformers_version"] == "4.57.3" and "torch_dtype" in config and "dtype" not in config
    assert "Rome" in greedy(tmp_path / "model")


def test_apply_with_eval_scores_fp16_close_to_the_source(tmp_path):
    recipe = load_recipe(ROOT / "recipes/fp16.yaml")
    recipe.eval.suite = "quick"
    recipe.eval.latency.runs = 2
    recipe.eval.latency.new_tokens = 8
    report = apply_recipe(recipe, "recipes/fp16.yaml", out_dir=tmp_path / "fp16")
    ev = report["eval"]
    assert 0.9 < ev["perf_norm"] < 1.1  # fp16 rounding barely moves the quick suite
    ppl = ev["model"]["tasks"]["corpus_ppl"]["word_perplexity,none"]
    assert ppl == pytest.approx(ev["baseline"]["tasks"]["corpus_ppl"]["word_perplexity,none"], rel=0.01)
    assert ev["model"]["tasks"]["minimal_pairs"]["acc,none"] > 0.6
    assert report["model"]["size_mb"] < 0.6 * report["source"]["size_mb"]
