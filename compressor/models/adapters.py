"""Architecture adapters: where a family keeps its decoder layers and which config keys follow them.

Edits are written once against this interface; family differences live here only.
"""

import importlib
from dataclasses import dataclass

from torch import nn

from compressor.core.errors import UserError


@dataclass(frozen=True)
class ArchitectureAdapter:
    model_type: str
    # config keys holding one entry per decoder layer (kept in sync when layers change)
    per_layer_config_keys: tuple[str, ...] = ("layer_types",)
    # RMSNorm modules inside a decoder layer, in order (EXAONE-4 uses post-norms, Llama pre-norms)
    layer_norm_names: tuple[str, ...] = ("input_layernorm", "post_attention_layernorm")
    # per-head norms on q and k, in that order (EXAONE-4 QK-norm); shared across heads, width head_dim
    qk_norm_names: tuple[str, ...] = ()
    pre_norm: bool = True
    # hybrid models with a sliding window leave their global (full-attention) layers without RoPE (EXAONE-4)
    global_layers_nope: bool = False
    # optimum-onnx has no ONNX config for this family: export it with the one of this model type (same
    # inputs, outputs and KV-cache layout; the family's own layers are traced from its modeling code)
    onnx_config_like: str | None = None
    # projections, by role: what reads the hidden state and what writes it back
    attn_in_names: tuple[str, ...] = ("q_proj", "k_proj", "v_proj")
    attn_out_name: str = "o_proj"
    mlp_in_names: tuple[str, ...] = ("gate_proj", "up_proj")
    mlp_out_name: str = "down_proj"
    # attention-module attributes that cache head counts at construction (updated when heads are pruned)
    head_count_attrs: tuple[str, ...] = ("num_heads", "num_attention_heads", "num_key_value_heads",
                                         "num_key_value_groups")
    # SmoothQuant (Xiao et al. 2023, arXiv 2211.10438) mappings in llm-compressor's form ([balance layers],
    # smooth layer): the smooth layer's output channels are divided by per-channel scales and the balance
    # layers' input columns multiplied by them, so the smooth layer must feed exactly those layers.
    # Pre-norm (Llama): llm-compressor's defaults, each pre-norm folded into the linears it feeds.
    smoothquant_mappings: tuple[tuple[tuple[str, ...], str], ...] = (
        (("re:.*q_proj", "re:.*k_proj", "re:.*v_proj"), "re:.*input_layernorm"),
        (("re:.*gate_proj", "re:.*up_proj"), "re:.*post_attention_layernorm"),
    )

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return model.model.layers

    def embed_tokens(self, model: nn.Module) -> nn.Embedding:
        return model.model.embed_tokens

    def final_norm(self, model: nn.Module) -> nn.Module:
        return model.model.norm

    def rotary_embedding(self, model: nn.Module) -> nn.Module:
        return model.model.rotary_emb

    def lm_head(self, model: nn.Module) -> nn.Linear:
        return model.lm_head

    def attention(self, layer: nn.Module) -> nn.Module:
        return layer.self_attn

    def mlp(self, layer: nn.Module) -> nn.Module:
        return layer.mlp

    def hidden_norms(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        """Every norm of width hidden_size, named: the per-layer norms, then the final norm (QK-norms excluded)."""
        norms = [(f"layers.{i}.{name}", getattr(layer, name))
                 for i, layer in enumerate(self.decoder_layers(model)) for name in self.layer_norm_names]
        return norms + [("norm", self.final_norm(model))]

    def head_dim(self, config) -> int:
        return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads

    def set_head_counts(self, model: nn.Module, heads: int, kv_heads: int) -> None:
        """Record new (uniform) head counts in the config and in every attention module's cached attributes."""
        config = model.config
        config.head_dim = self.head_dim(config)  # explicit: hidden_size // heads no longer holds
        config.num_attention_heads, config.num_key_value_heads = heads, kv_heads
        values = {"num_heads": heads, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
                  "num_key_value_groups": heads // kv_heads}
        for layer in self.decoder_layers(model):
            attn = self.attention(layer)
            for attr in self.head_count_attrs:
                if hasattr(attn, attr):
                    setattr(attn, attr, values[attr])

    def query_norm(self, attention: nn.Module) -> nn.Module | None:
        """The per-head norm an attention module applies to queries after q_proj and before RoPE, else None.

        EXAONE-4's QK-norm (Qwen3-style); tools that rebuild queries outside the module (kvpress) need it.
        """
        return getattr(attention, self.qk_norm_names[0]) if self.qk_norm_names else None

    def key_norm(self, attention: nn.Module) -> nn.Module | None:
        """The per-head norm applied to keys after k_proj and before RoPE (EXAONE-4's QK-norm), else None."""
        return getattr(attention, self.qk_norm_names[1]) if self.qk_norm_names else None

    def rotary_applies(self, config, index: int) -> bool:
        """Whether layer `index`'s attention rotates queries and keys (as its stock module decides)."""
        if self.global_layers_nope and getattr(config, "sliding_window", None) is not None:
            return self.layer_type(config, index) == "sliding_attention"
        return True

    def sliding_window(self, config, index: int) -> int | None:
        """Keys a query of layer `index` sees (itself included), or None for full causal attention."""
        if self.layer_type(config, index) == "sliding_attention":
            return getattr(config, "sliding_window", None)
        return None

    def rotary_function(self, attention: nn.Module):
        """The family's own `apply_rotary_pos_emb(q, k, cos, sin)`, from the module's modeling file."""
        return importlib.import_module(type(attention).__module__).apply_rotary_pos_emb

    def attention_input_norm(self, layer: nn.Module) -> nn.Module:
        """What a decoder layer applies to its input before self-attention (pre-norm), else identity.

        Llama normalises first (`input_layernorm`); EXAONE-4 feeds the raw residual stream to attention
        (its norms come after attention / MLP, and QK-norm lives inside the attention module).
        """
        return layer.input_layernorm if self.pre_norm else nn.Identity()

    def attention_parts(self, layer: nn.Module) -> dict[str, nn.Module]:
        """The submodules that compute a layer's attention weights (for loading only what a scorer needs)."""
        parts = {"self_attn": self.attention(layer)}
        if self.pre_norm:
            parts["input_layernorm"] = layer.input_layernorm
        return parts

    def layer_type(self, config, index: int) -> str:
        """`full_attention` or `sliding_attention` for decoder layer `index`."""
        types = getattr(config, "layer_types", None)
        return types[index] if types else "full_attention"

    def keep_layers(self, model: nn.Module, keep: list[int]) -> None:
        """Keep only the decoder layers at indices `keep` (in order); renumber and sync the config."""
        layers = self.decoder_layers(model)
        n = len(layers)
        kept = nn.ModuleList([layers[i] for i in keep])
        for new_idx, layer in enumerate(kept):
            self.attention(layer).layer_idx = new_idx
            if hasattr(layer, "layer_idx"):
                layer.layer_idx = new_idx
        model.model.layers = kept
        config = model.config
        config.num_hidden_layers = len(keep)
        for key in self.per_layer_config_keys:
            values = getattr(config, key, None)
            if isinstance(values, (list, tuple)) and len(values) == n:
                setattr(config, key, [values[i] for i in keep])

    def kv_cache_shape(self, config) -> tuple[int, int]:
        """(KV heads, head dim) of one layer's cache, from the config (explicit head_dim: pruned heads keep theirs)."""
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return kv_heads, head_dim

    def config_problems(self, config) -> list[str]:
        """Inconsistencies a serving stack would reject (empty when the config is sound)."""
        problems = []
        n = config.num_hidden_layers
        for key in self.per_layer_config_keys:
            values = getattr(config, key, None)
            if values is not None and len(values) != n:
                problems.append(f"{key} has {len(values)} entries but num_hidden_layers is {n}")
        heads, kv = config.num_attention_heads, getattr(config, "num_key_value_heads", None)
        if kv and heads % kv:
            problems.append(f"num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({kv})")
        return problems


ADAPTERS = {
    "llama": ArchitectureAdapter("llama"),
    "exaone4": ArchitectureAdapter(
        "exaone4",
        layer_norm_names=("post_attention_layernorm", "post_feedforward_layernorm"),
        qk_norm_names=("q_norm", "k_norm"),
        pre_norm=False,
        global_layers_nope=True,
        onnx_config_like="qwen3",  # GQA with explicit head_dim and QK-norm, like EXAONE-4.0
        # Post-norms normalise a block's output, so q/k/v and gate/up read the raw residual stream: no
        # norm precedes them to absorb the scales. Only linear-into-linear remains: up_proj's output
        # channels scale down_proj's input exactly (down(act(gate(x)) * up(x))). v_proj -> o_proj is left
        # out: with grouped-query attention one v channel feeds several o_proj columns (shapes differ).
        smoothquant_mappings=((("re:.*down_proj",), "re:.*up_proj"),),
    ),
}


def adapter_for(config) -> ArchitectureAdapter:
    model_type = getattr(config, "model_type", None)
    if model_type not in ADAPTERS:
        raise UserError(
            f"model type {model_type!r} is not supported (supported: {', '.join(sorted(ADAPTERS))})"
        )
    return ADAPTERS[model_type]
