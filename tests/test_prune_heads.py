import json

import pytest
import torch

from compressor.edits.prune_heads import choose_heads
from compressor.core.errors import UserError
from compressor.models.adapters import adapter_for
from structural_helpers import CALIBRATION, IDS, apply_tiny, load, logits, one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def zero_heads(model, kept_per_layer: list[list[int]], head_dim: int):
    """The original model with every other query head's output zeroed (o_proj columns)."""
    with torch.no_grad():
        for layer, kept in zip(model.model.layers, kept_per_layer):
            o_proj = layer.self_attn.o_proj.weight
            for head in range(o_proj.shape[1] // head_dim):
                if head not in kept:
                    o_proj[:, head * head_dim:(head + 1) * head_dim] = 0
    return model


def test_keeping_every_head_is_the_identity(tmp_path, tiny_dir):
    out, report = apply_tiny(tmp_path, tiny_dir, [{"stage": "prune_heads", "keep": 4, "calibration": CALIBRATION}])
    torch.testing.assert_close(logits(load(out)), logits(load(tiny_dir)), atol=1e-5, rtol=1e-5)
    assert report["stages"][0]["result"]["scores"]["kept_heads"] == [[0, 1, 2, 3]] * 4


@pytest.mark.parametrize("gqa, kv_after", [("per_group", 2), ("whole_groups", 1)])
def test_pruned_heads_equal_the_original_with_those_heads_zeroed(tmp_path, tiny_dir, gqa, kv_after):
    out, report = apply_tiny(tmp_path, tiny_dir, [{"stage": "prune_heads", "keep": 2, "gqa": gqa,
                                                   "calibration": CALIBRATION}])
    result = report["stages"][0]["result"]
    kept = result["scores"]["kept_heads"]
    assert all(len(k) == 2 for k in kept) and result["kv_heads_after"] == kv_after
    if gqa == "per_group":  # one query head from each KV group (heads 0-1 use KV head 0, heads 2-3 KV head 1)
        assert all(k[0] in (0, 1) and k[1] in (2, 3) for k in kept)
    else:
        assert all(k in ([0, 1], [2, 3]) for k in kept)
    assert len(result["scores"]["head_importance"]) == 4 and len(result["scores"]["kv_group_importance"][0]) == 2

    pruned, original = load(out), load(tiny_dir)
    expected = logits(zero_heads(original, kept, head_dim=16))
    assert not torch.allclose(logits(load(tiny_dir)), expected, atol=1e-3)  # the edit did something
    torch.testing.assert_close(logits(pruned), expected, atol=1e-5, rtol=1e-5)

    config = json.loads((out / "config.json").read_text())
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (2, kv_after, 16)
    assert config["hidden_size"] == 64
    attn = pruned.model.layers[0].self_attn
    assert attn.q_proj.weight.shape == (32, 64) and attn.k_proj.weight.shape == (16 * kv_after, 64)
    assert attn.o_proj.weight.shape == (64, 32)
    if hasattr(attn, "q_norm"):  # EXAONE-4 QK-norm: per head_dim, shared by every head, untouched
        assert attn.q_norm.weight.shape == (16,)
    assert adapter_for(pruned.config).config_problems(pruned.config) == []
    with torch.no_grad():
        cached = pruned.generate(IDS, max_new_tokens=5, do_sample=False, use_cache=True)
        uncached = pruned.generate(IDS, max_new_tokens=5, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)


def test_naive_pruning_by_index_keeps_the_first_groups(tmp_path, tiny_llama_dir):
    _, report = apply_tiny(tmp_path, tiny_llama_dir, [{"stage": "prune_heads", "keep_fraction": 0.5, "by": "index"}])
    result = report["stages"][0]["result"]
    assert result["scores"] == {"kept_heads": [[0, 1]] * 4} and result["heads_after"] == 2


def test_choose_heads_ranks_within_groups_or_whole_groups():
    heads = torch.tensor([0.1, 0.9, 0.5, 0.7, 0.2, 0.3])  # 3 KV groups of 2
    groups = torch.tensor([0.2, 0.9, 0.4])
    assert choose_heads(heads, groups, 6, 3, 3, "per_group", "importance") == [1, 3, 5]
    assert choose_heads(heads, groups, 6, 3, 4, "whole_groups", "importance") == [2, 3, 4, 5]
    assert choose_heads(None, None, 6, 3, 3, "per_group", "index") == [0, 2, 4]
    assert choose_heads(None, None, 6, 3, 2, "whole_groups", "index") == [0, 1]


@pytest.mark.parametrize("stage, message", [
    ({"keep": 3, "gqa": "per_group"}, r"keep 3 is not a multiple of 2; heads to keep must be a multiple of the 2 KV "
                                      r"groups \(gqa: per_group keeps as many heads in each group\)"),
    ({"keep": 1}, r"keep 1 is not a multiple of 2; .*group size 2 \(gqa: whole_groups keeps whole KV groups\)"),
    ({"keep": 6}, r"keep 6 is outside 1..4 \(the model has 4\)"),
    ({"keep": 0}, r"stages\[0\].keep: Input should be greater than 0"),
    ({"keep": [2, 2, 4, 4]}, r"stages\[0\].keep: give one number for every layer: vLLM serves only uniform layers"),
    ({"keep_fraction": 1.5}, r"keep_fraction: Input should be less than or equal to 1"),
    ({}, r"give exactly one of `keep` or `keep_fraction`"),
])
def test_invalid_targets_fail_before_loading_the_model(tmp_path, tiny_llama_dir, monkeypatch, stage, message):
    import compressor.pipeline

    monkeypatch.setattr(compressor.pipeline, "load_model", lambda *a, **k: pytest.fail("loaded the model"))
    with pytest.raises(UserError, match=message) as info:
        apply_tiny(tmp_path, tiny_llama_dir, [{"stage": "prune_heads", **stage}])
    assert str(info.value).startswith("t.yaml: stages[0]") and "\n" not in str(info.value)


def test_later_stages_are_checked_against_the_planned_config(tmp_path, tiny_llama_dir, monkeypatch):
    import compressor.pipeline

    monkeypatch.setattr(compressor.pipeline, "load_model", lambda *a, **k: pytest.fail("loaded the model"))
    with pytest.raises(UserError, match=r"stages\[1\] \(prune_heads\): keep 4 is outside 1..2"):
        apply_tiny(tmp_path, tiny_llama_dir, [{"stage": "prune_heads", "keep": 2},
                                              {"stage": "prune_heads", "keep": 4}])
