import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from compressor.data.calibration import CalibrationSpec
from compressor.edits.drop_layers import DropLayersParams, choose_layers
from compressor.models.adapters import adapter_for
from compressor.pipeline import apply_recipe
from compressor.recipe import parse_recipe

IDS = torch.tensor([[5, 77, 140, 33, 9, 250, 18, 61, 99, 120, 7, 44]])  # shorter than the sliding window


def reference_logits(model, keep: list[int]) -> torch.Tensor:
    """Forward pass by hand through the kept layers of the untouched model."""
    inner = model.model
    positions = torch.arange(IDS.shape[1])[None]
    hidden = inner.embed_tokens(IDS)
    rope = inner.rotary_emb(hidden, positions)
    for index in keep:
        out = inner.layers[index](hidden, attention_mask=None, position_ids=positions, position_embeddings=rope)
        hidden = out[0] if isinstance(out, tuple) else out
    return model.lm_head(inner.norm(hidden))


def apply_tiny(tmp_path, model_dir, stages):
    recipe = parse_recipe({"name": "t", "model": str(model_dir), "stages": stages, "eval": {"enabled": False}})
    out = tmp_path / "out"
    report = apply_recipe(recipe, "t.yaml", out_dir=out)
    return out / "model", report


@pytest.mark.parametrize("stages, dropped", [
    ([{"stage": "drop_layers", "layers": [1, 2]}], [1, 2]),
    ([{"stage": "drop_layers", "count": 1, "from": "top"}], [3]),
    ([{"stage": "drop_layers", "count": 2, "from": "bottom"}], [0, 1]),
])
def test_drop_equals_original_without_those_layers(tmp_path, tiny_dir, stages, dropped):
    original = AutoModelForCausalLM.from_pretrained(tiny_dir, attn_implementation="sdpa").eval()
    out_dir, report = apply_tiny(tmp_path, tiny_dir, stages)
    assert report["stages"][0]["result"]["dropped_layers"] == dropped
    pruned = AutoModelForCausalLM.from_pretrained(out_dir, attn_implementation="sdpa").eval()
    keep = [i for i in range(4) if i not in dropped]
    with torch.no_grad():
        expected = reference_logits(original, keep)
        got = pruned(IDS).logits
        assert not torch.allclose(original(IDS).logits, got, atol=1e-3)  # the edit did something
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

    config = json.loads((out_dir / "config.json").read_text())
    assert config["num_hidden_layers"] == len(keep)
    if "layer_types" in config:
        source_types = json.loads((tiny_dir / "config.json").read_text())["layer_types"]
        assert config["layer_types"] == [source_types[i] for i in keep]
    assert adapter_for(pruned.config).config_problems(pruned.config) == []
    assert [layer.self_attn.layer_idx for layer in pruned.model.layers] == list(range(len(keep)))


def test_generation_with_cache_after_drop(tmp_path, tiny_dir):
    out_dir, _ = apply_tiny(tmp_path, tiny_dir, [{"stage": "drop_layers", "layers": [0, 2]}])
    model = AutoModelForCausalLM.from_pretrained(out_dir).eval()
    with torch.no_grad():
        cached = model.generate(IDS, max_new_tokens=6, do_sample=False, use_cache=True)
        uncached = model.generate(IDS, max_new_tokens=6, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("by", ["angular", "block_influence"])
def test_ranked_drop_records_scores_and_picks_the_minimum(tiny_llama_dir, by):
    from compressor.models.sources import load_model

    model, tokenizer = load_model(tiny_llama_dir, torch.device("cpu"))
    params = DropLayersParams(stage="drop_layers", count=2, by=by,
                              calibration=CalibrationSpec(samples=4, seq_len=64))
    dropped, scores = choose_layers(model, tokenizer, params, adapter_for(model.config))
    values = scores["angular_distance" if by == "angular" else "block_influence"]
    assert len(dropped) == 2
    if by == "angular":
        assert len(values) == 3  # blocks of 2 in 4 layers
        assert dropped == [values.index(min(values)), values.index(min(values)) + 1]
    else:
        assert len(values) == 4
        assert sorted(values)[:2] == sorted(values[i] for i in dropped)
    assert all(0.0 <= v <= 2.0 for v in values)
