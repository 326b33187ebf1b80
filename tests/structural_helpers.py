"""Shared by the structural-edit tests: apply stages to a tiny model, reload, compare logits."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from compressor.pipeline import apply_recipe
from compressor.recipe import parse_recipe

IDS = torch.tensor([[5, 77, 140, 33, 9, 250, 18, 61, 99, 120, 7, 44]])  # shorter than the sliding window
CALIBRATION = {"samples": 4, "seq_len": 64}


def apply_tiny(tmp_path, model_dir, stages, name="out"):
    recipe = parse_recipe({"name": "t", "model": str(model_dir), "stages": stages, "eval": {"enabled": False}}, "t.yaml")
    out = tmp_path / name
    report = apply_recipe(recipe, "t.yaml", out_dir=out)
    return out / "model", report


def load(folder):
    return AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa").eval()


@torch.no_grad()
def logits(model, ids=IDS):
    return model(ids).logits


@pytest.fixture(autouse=False)
def one_thread():
    """Tiny models run fastest on one thread; on a busy machine extra threads only wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
