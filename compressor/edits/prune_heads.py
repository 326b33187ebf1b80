"""`prune_heads`: keep the same number of query heads in every layer, GQA-aware, ranked by importance.

Heads are ranked by Minitron's activation importance (arXiv 2407.14679; compressor.edits.importance)
or, as the naive baseline, by index. Two GQA layouts keep `num_attention_heads % num_key_value_heads == 0`:

- `gqa: whole_groups` (default): whole KV groups go (their K/V heads too), ranked by group importance;
- `gqa: per_group`: every KV group keeps the same number of its query heads (KV heads unchanged).

On SmolLM2-135M (9 heads, 3 KV groups, 6 kept) whole groups kept far more quality than per-group
pruning (token perplexity 17 -> 38 vs -> 169 on eval text, before healing), hence the default.

q/k/v rows and o_proj columns are sliced per head; EXAONE-4's QK-norm weights have width head_dim and
are shared by all heads, so they stay as they are; `head_dim` is written to the config explicitly.
"""

from typing import ClassVar, Literal

from pydantic import Field

from compressor.data.calibration import CalibrationSpec, calibration_windows
from compressor.edits.importance import collect_importance
from compressor.edits.slicing import head_channels, slice_linear
from compressor.edits.target_size import count_or_fraction, resolve_size
from compressor.stages import StageParams, register


class PruneHeadsParams(StageParams):
    stage: Literal["prune_heads"]
    changes_layers = True  # head indices shift: an earlier evaluator_heads stage would name the wrong heads
    memory_hint: ClassVar[str] = "a shorter calibration.seq_len"
    keep: int | None = Field(None, gt=0, description="query heads to keep in every layer")
    keep_fraction: float | None = Field(None, gt=0, le=1,
                                        description="or: this share of the heads, rounded to a valid count")
    gqa: Literal["whole_groups", "per_group"] = Field(
        "whole_groups", description="whole_groups: drop whole KV groups; per_group: same number of query heads in each")
    by: Literal["importance", "index"] = Field("importance", description="index = keep the first heads (naive)")
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)

    _uniform, _one_size = count_or_fraction("keep", "keep_fraction")

    def step(self, config) -> int:
        """Granularity of valid head counts: one head per KV group, or one whole group."""
        kv = config.num_key_value_heads
        return kv if self.gqa == "per_group" else config.num_attention_heads // kv

    def target(self, config) -> int:
        heads, kv = config.num_attention_heads, config.num_key_value_heads
        if heads % kv:
            raise ValueError(f"the model's num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({kv})")
        layout = (f"a multiple of the {kv} KV groups (gqa: per_group keeps as many heads in each group)"
                  if self.gqa == "per_group" else
                  f"a multiple of the group size {heads // kv} (gqa: whole_groups keeps whole KV groups)")
        try:
            return resolve_size(self.keep, self.keep_fraction, heads, self.step(config), "keep")
        except ValueError as error:
            raise ValueError(f"{error}; heads to keep must be {layout}") from None

    def check_config(self, config) -> None:
        self.target(config)

    def planned_config(self, config):
        keep = self.target(config)
        if self.gqa == "whole_groups":
            config.num_key_value_heads = keep // (config.num_attention_heads // config.num_key_value_heads)
        config.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        config.num_attention_heads = keep
        return config

    def working_memory(self, before, after, device_type: str) -> dict[str, int]:
        return {"calibration forward": before.forward_bytes(1, self.calibration.seq_len),
                "sliced weights": after.weights_bytes}


def choose_heads(head_scores, group_scores, heads: int, kv: int, keep: int, gqa: str, by: str) -> list[int]:
    """Query heads to keep in one layer (sorted, so each kept head stays with its KV head)."""
    size = heads // kv
    if gqa == "per_group":
        per = keep // kv
        kept = []
        for g in range(kv):
            members = list(range(g * size, (g + 1) * size))
            if by == "importance":
                members = sorted(members, key=lambda h: -float(head_scores[h]))
            kept += members[:per]
        return sorted(kept)
    groups = list(range(kv))
    if by == "importance":
        groups = sorted(groups, key=lambda g: -float(group_scores[g]))
    return sorted(h for g in groups[: keep // size] for h in range(g * size, (g + 1) * size))


def slice_attention(attn, adapter, kept_heads: list[int], heads: int, kv: int, head_dim: int) -> list[int]:
    """Keep `kept_heads` (query heads) and the KV heads they use; returns the kept KV heads."""
    size = heads // kv
    kept_kv = sorted({h // size for h in kept_heads})
    q_name, k_name, v_name = adapter.attn_in_names
    slice_linear(getattr(attn, q_name), out_keep=head_channels(kept_heads, head_dim))
    for name in (k_name, v_name):
        slice_linear(getattr(attn, name), out_keep=head_channels(kept_kv, head_dim))
    slice_linear(getattr(attn, adapter.attn_out_name), in_keep=head_channels(kept_heads, head_dim))
    return kept_kv


@register(PruneHeadsParams)
def prune_heads(model, tokenizer, params: PruneHeadsParams, ctx):
    adapter, config = ctx.adapter, model.config
    heads, kv, head_dim = config.num_attention_heads, config.num_key_value_heads, adapter.head_dim(config)
    keep = params.target(config)
    layers = adapter.decoder_layers(model)
    scores = None
    if params.by == "importance":
        windows = calibration_windows(tokenizer, params.calibration)
        scores = collect_importance(model, adapter, windows, kinds=("heads",), progress=ctx.progress)
    kept_per_layer = []
    for index, layer in enumerate(layers):
        kept = choose_heads(scores.heads[index] if scores else None, scores.kv_groups[index] if scores else None,
                            heads, kv, keep, params.gqa, params.by)
        kept_kv = slice_attention(adapter.attention(layer), adapter, kept, heads, kv, head_dim)
        kept_per_layer.append(kept)
    adapter.set_head_counts(model, keep, len(kept_kv))
    ctx.record(heads_before=heads, heads_after=keep, kv_heads_before=kv, kv_heads_after=len(kept_kv),
               head_dim=head_dim, gqa=params.gqa, by=params.by,
               scores={"kept_heads": kept_per_layer,
                       **({"head_importance": scores.to_json()["heads"],
                           "kv_group_importance": scores.to_json()["kv_groups"]} if scores else {})})
    return model
