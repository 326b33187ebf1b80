"""Apply an NVIDIA kvpress press (0.5.5) to a transformers model's KV cache while the cache grows.

kvpress compresses once, after the prefill forward pass. Long-context evaluation needs more: the
cache is compressed after every prefill chunk (teacher-forced perplexity) and, for StreamingLLM,
after every decoded token. `CacheCompressor` drives that with kvpress's own parts:

- the press's `score(...)` ranks the cached positions (the press itself, not re-implemented);
- the best `n_kept` are kept in their original order (kvpress's `ScorerPress.compress` keeps them in
  top-k order, which is fine for one compression but loses the sinks/recent-window layout when
  compressing again), exactly like `KeyRerotationPress.compress`;
- StreamingLLM re-rotates kept keys to their positions within the cache, as the paper does
  (Xiao et al. 2023, arXiv 2309.17453, section 3.2) with kvpress's `KeyRerotationPress.rerotate_keys`;
  the other presses keep the original positions (kvpress's default).

How many positions stay: StreamingLLM with `window` keeps n_sink + window; every other press keeps
int(seen · (1 − ratio)) of the `seen` tokens, re-targeted after each prefill chunk (ratio presses do not
compress single decoded tokens, as in kvpress).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from dataclasses import dataclass

import torch
from torch import nn

from compressor.core.errors import UserError
from compressor.evaluate.kv.spec import PRESSES, KVPressSpec


def _kvpress():
    import kvpress

    return kvpress


def press_class(spec: KVPressSpec):
    return getattr(_kvpress(), PRESSES[spec.press])


def build_press(spec: KVPressSpec):
    """The kvpress object for `spec` (None for press none); UserError for options it does not take."""
    if not spec.active:
        return None
    cls = press_class(spec)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = dict(spec.options)
    settable = fields - {"compression_ratio", "n_sink"}  # those two are kv_press.ratio / kv_press.n_sink
    unknown = sorted(set(kwargs) - settable)
    if unknown:
        raise UserError(f"kv_press.options: {spec.press} ({cls.__name__}) has no option {unknown[0]!r} "
                        f"(options: {', '.join(sorted(settable)) or 'none'}; ratio and n_sink are kv_press fields)")
    if spec.n_sink is not None:
        if "n_sink" not in fields:
            raise UserError(f"kv_press.n_sink: {spec.press} ({cls.__name__}) keeps no sink tokens")
        kwargs["n_sink"] = spec.n_sink
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, AssertionError) as error:
        raise UserError(f"kv_press: {cls.__name__}({kwargs}): {error}") from None


def min_query_tokens(press) -> int:
    """Forward passes shorter than this are not compressed (SnapKV scores with its last window_size queries)."""
    return int(getattr(press, "window_size", 0)) + 1


def check_press_for_model(spec: KVPressSpec, config) -> None:
    """Reject a press the model cannot take, before its weights load."""
    if not spec.active:
        return
    types = set(getattr(config, "layer_types", None) or ["full_attention"])
    if types != {"full_attention"} or getattr(config, "sliding_window", None):
        raise UserError(f"kv_press: {config.model_type} has sliding-window layers ({', '.join(sorted(types))}); "
                        "presses compress full-attention caches only")


class _ShiftedRotary(nn.Module):
    """The model's rotary embedding seen from a forward pass that starts at position `offset`.

    kvpress presses that look ahead in positions (ExpectedAttention's future queries) call
    `module.rotary_emb(x, arange(q_len, ...))`, assuming the pass started at position 0; with chunked
    prefill it starts at `offset`, so positions are shifted by it. `inv_freq` is what re-rotation reads.
    """

    def __init__(self, rotary: nn.Module):
        super().__init__()
        self.rotary = rotary
        self.offset = 0

    @property
    def inv_freq(self):
        return self.rotary.inv_freq

    def forward(self, x, position_ids):
        return self.rotary(x, position_ids + self.offset)


def _prerope_queries(q_proj: nn.Module, norm: nn.Module, head_dim: int, hidden: torch.Tensor) -> torch.Tensor:
    """Queries as a QK-norm attention module computes them before RoPE: q_proj, one row per head, its q-norm."""
    return norm(q_proj(hidden).view(*hidden.shape[:-1], -1, head_dim).transpose(1, 2))


@contextlib.contextmanager
def _query_norm_patch(attentions: list[nn.Module], adapter):
    """While a press runs, kvpress rebuilds this model's queries with the adapter's q-norm.

    kvpress 0.5.5 `get_prerope_query_states` (SnapKV, ExpectedAttention, CAP, TOVA via SnapKV, ...) applies
    QK-norm only to Qwen3/Gemma3 classes, so EXAONE-4 would be scored with un-normalised queries, silently.
    Each press module binds the helper by name (`from kvpress.utils import ...`): it is replaced where it is
    looked up, for these attention modules only (others go to kvpress's own), and restored on exit.
    """
    norms = {a: n for a in attentions if (n := adapter.query_norm(a)) is not None}
    if not norms:
        yield
        return
    utils = _kvpress().utils
    current = utils.get_prerope_query_states
    q_proj_name = adapter.attn_in_names[0]

    def queries(module, hidden_states):
        norm = norms.get(module)
        if norm is None:
            return current(module, hidden_states)
        return _prerope_queries(getattr(module, q_proj_name), norm, module.head_dim, hidden_states)

    bound = [m for name, m in list(sys.modules.items())
             if name.split(".")[0] == "kvpress" and getattr(m, "get_prerope_query_states", None) is current]
    for module in bound:
        module.get_prerope_query_states = queries
    try:
        yield
    finally:
        for module in bound:
            module.get_prerope_query_states = current


def cache_bytes(cache) -> int:
    return sum(t.numel() * t.element_size() for layer in cache.layers
               for t in (getattr(layer, "keys", None), getattr(layer, "values", None)) if t is not None)


@dataclass
class CompressionState:
    """Per-sequence bookkeeping: true tokens seen, whether compression is on for this pass, peak cache size."""

    seen: int = 0
    compress: bool = True
    peak_cache_bytes: int = 0


class CacheCompressor:
    """Hooks on every attention layer that compress the DynamicCache after each forward pass."""

    def __init__(self, model, spec: KVPressSpec, adapter):
        self.model, self.spec, self.adapter = model, spec, adapter
        self.press = build_press(spec)
        self.rerotate = spec.press == "streaming_llm"
        self.budget = (spec.n_sink if spec.n_sink is not None else 4) + spec.window if spec.window else None
        self.state = CompressionState()
        self._rotary: _ShiftedRotary | None = None

    def target(self, k_len: int, q_len: int) -> int:
        """How many cached positions to keep after this pass."""
        if self.budget is not None:
            return min(k_len, self.budget)
        if q_len == 1 or q_len < min_query_tokens(self.press) or not self.spec.ratio:
            return k_len  # ratio presses compress prefill passes only (not decoded tokens), like kvpress
        from kvpress.utils import compute_n_kept

        return min(k_len, compute_n_kept(self.state.seen, self.spec.ratio))

    def set_offset(self, first_position: int) -> None:
        if self._rotary is not None:
            self._rotary.offset = first_position

    def _hook(self, module, args, kwargs, output):
        cache = kwargs["past_key_values"]
        layer = cache.layers[module.layer_idx]
        keys, values = layer.keys, layer.values
        if module.layer_idx == 0:
            self.state.peak_cache_bytes = max(self.state.peak_cache_bytes, cache_bytes(cache))
        hidden = kwargs["hidden_states"]
        k_len, q_len = keys.shape[2], hidden.shape[1]
        n_kept = self.target(k_len, q_len)
        if not self.state.compress or n_kept >= k_len:
            return output
        # Some scores read the ratio (StreamingLLM prunes int-rounded positions after the sinks): set it so
        # that int(k_len · (1 − ratio)) == n_kept, as kvpress's DecodingPress does for its target size.
        self.press.compression_ratio = (k_len - n_kept - 0.5) / k_len
        scores = self.press.score(module, hidden, keys, values, output[1], kwargs)
        indices = scores.topk(n_kept, dim=-1).indices.sort(dim=-1).values
        if self.rerotate:
            from kvpress import KeyRerotationPress

            layer.keys = KeyRerotationPress.rerotate_keys(module, indices, keys)
        else:
            layer.keys = keys.gather(2, indices.unsqueeze(-1).expand(-1, -1, -1, keys.shape[-1])).contiguous()
        layer.values = values.gather(2, indices.unsqueeze(-1).expand(-1, -1, -1, values.shape[-1])).contiguous()
        return output

    @contextlib.contextmanager
    def active(self):
        """Hooks installed (and the model restored on exit); a no-op for press none."""
        if self.press is None:
            yield self
            return
        self.press.post_init_from_model(self.model)
        layers = self.adapter.decoder_layers(self.model)
        self._rotary = _ShiftedRotary(self.model.model.rotary_emb)
        attentions = [self.adapter.attention(layer) for layer in layers]
        hooks = []
        try:
            for attention in attentions:
                attention.rotary_emb = self._rotary  # what kvpress's own context manager sets, shifted
                hooks.append(attention.register_forward_hook(self._hook, with_kwargs=True))
            with _query_norm_patch(attentions, self.adapter), torch.inference_mode():
                yield self
        finally:
            for hook in hooks:
                hook.remove()
            for attention in attentions:
                if "rotary_emb" in attention._modules:
                    del attention._modules["rotary_emb"]
            self._rotary = None
