"""kvpress rebuilds queries outside the attention module; on EXAONE-4 (QK-norm) they must be the module's own.

kvpress 0.5.5 applies q_norm only to Qwen3/Gemma3 attention, so query-based presses (SnapKV, ExpectedAttention,
CAP, TOVA) would score EXAONE-4 with un-normalised queries; `_query_norm_patch` fixes that (issue 18, item 4).
"""

import contextlib
import sys

import kvpress
import kvpress.presses.snapkv_press as snapkv_press
import pytest
import torch
from transformers.models.exaone4 import modeling_exaone4
from transformers.models.llama import modeling_llama
from transformers.models.llama.modeling_llama import rotate_half

from compressor.evaluate.kv import press as press_module
from compressor.evaluate.kv.press import _query_norm_patch
from compressor.evaluate.kv.runtime import PressRuntime
from compressor.evaluate.kv.spec import KVPressSpec
from compressor.models.adapters import adapter_for
from compressor.models.tiny import tiny_exaone4_config, tiny_llama_config, tiny_model

ORIGINAL = kvpress.utils.get_prerope_query_states
IDS = torch.randint(3, 259, (1, 128), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def exaone():
    return tiny_model(tiny_exaone4_config())  # all full attention with RoPE, like EXAONE-4.0-1.2B


@pytest.fixture(scope="module")
def llama():
    return tiny_model(tiny_llama_config())


def attentions(model):
    adapter = adapter_for(model.config)
    return [adapter.attention(layer) for layer in adapter.decoder_layers(model)], adapter


def patch(model):
    return _query_norm_patch(*attentions(model))


def module_queries(model, family, monkeypatch) -> list[dict]:
    """Per layer: the attention module's input, its (cos, sin), and its queries after q_proj, q-norm and RoPE,
    recorded from the module's own forward (its family's `apply_rotary_pos_emb`, wrapped)."""
    records, rope = [], family.apply_rotary_pos_emb

    def recording_rope(q, k, cos, sin, *args, **kwargs):
        q_embed, k_embed = rope(q, k, cos, sin, *args, **kwargs)
        records[-1]["query"] = q_embed
        return q_embed, k_embed

    def pre_hook(module, args, kwargs):
        records.append({"module": module, "hidden": kwargs["hidden_states"], "rope": kwargs["position_embeddings"]})

    monkeypatch.setattr(family, "apply_rotary_pos_emb", recording_rope)
    hooks = [a.register_forward_pre_hook(pre_hook, with_kwargs=True) for a in attentions(model)[0]]
    try:
        with torch.no_grad():
            model(IDS)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(records) == model.config.num_hidden_layers and all("query" in r for r in records)
    return records


def rebuilt_query(record) -> torch.Tensor:
    """The queries SnapKV scores with: kvpress's pre-RoPE rebuild (looked up where SnapKV looks), then its RoPE."""
    with torch.no_grad():
        query = snapkv_press.get_prerope_query_states(record["module"], record["hidden"])
    cos, sin = record["rope"]
    return query * cos.unsqueeze(1) + rotate_half(query) * sin.unsqueeze(1)


def matches(record) -> bool:
    return torch.allclose(rebuilt_query(record), record["query"], atol=1e-5)


def test_exaone4_rebuilt_queries_match_the_module(exaone, monkeypatch):
    records = module_queries(exaone, modeling_exaone4, monkeypatch)
    with patch(exaone):
        assert all(matches(r) for r in records)
    assert not any(matches(r) for r in records)  # kvpress alone: no q_norm, wrong queries


def test_every_kvpress_binding_is_patched_then_restored(exaone):
    attention, hidden = attentions(exaone)[0][0], torch.randn(1, 8, exaone.config.hidden_size)
    expected = attention.q_norm(attention.q_proj(hidden).view(1, 8, -1, attention.head_dim).transpose(1, 2))
    bound = {name: m for name, m in sys.modules.items()
             if name.startswith("kvpress") and getattr(m, "get_prerope_query_states", None) is ORIGINAL}
    assert {"kvpress.utils", "kvpress.presses.snapkv_press", "kvpress.presses.expected_attention_press",
            "kvpress.presses.cap_press"} <= set(bound)
    with patch(exaone):
        for name, module in bound.items():
            assert torch.allclose(module.get_prerope_query_states(attention, hidden), expected, atol=1e-6), name
    assert all(module.get_prerope_query_states is ORIGINAL for module in bound.values())


def test_llama_is_left_to_kvpress(llama, exaone, monkeypatch):
    records = module_queries(llama, modeling_llama, monkeypatch)
    with patch(llama):
        assert snapkv_press.get_prerope_query_states is ORIGINAL  # no q-norm: nothing patched
        assert all(matches(r) for r in records)
    with patch(exaone):  # patched for EXAONE-4's modules only: a Llama module still gets kvpress's own queries
        assert all(torch.equal(snapkv_press.get_prerope_query_states(r["module"], r["hidden"]),
                               ORIGINAL(r["module"], r["hidden"])) for r in records)


def kept_keys(model, spec) -> list[torch.Tensor]:
    runtime = PressRuntime(model, spec)
    with runtime.session():
        cache = runtime.new_cache()
        logits = runtime.forward(IDS, cache)
    assert torch.isfinite(logits).all()
    return [layer.keys for layer in cache.layers]


def test_snapkv_on_exaone4_keeps_what_the_real_attention_keeps(exaone, monkeypatch):
    """sdpa returns no attention weights, so SnapKV rebuilds queries; eager hands it the module's own weights."""
    spec = KVPressSpec(press="snapkv", ratio=0.5, options={"window_size": 16})  # 48 of 64 kept by score
    eager = tiny_model(tiny_exaone4_config())
    eager.set_attn_implementation("eager")
    real = kept_keys(eager, spec)
    rebuilt = kept_keys(exaone, spec)
    assert [k.shape[2] for k in rebuilt] == [64] * exaone.config.num_hidden_layers
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(rebuilt, real))
    monkeypatch.setattr(press_module, "_query_norm_patch", lambda *_: contextlib.nullcontext())
    assert not all(torch.allclose(a, b, atol=1e-5) for a, b in zip(kept_keys(exaone, spec), real))


@pytest.mark.parametrize("name", ["snapkv", "expected_attention", "cap", "tova"])
def test_query_presses_run_on_exaone4(exaone, name):
    keys = kept_keys(exaone, KVPressSpec(press=name, ratio=0.5))
    assert [k.shape[2] for k in keys] == [64] * exaone.config.num_hidden_layers
