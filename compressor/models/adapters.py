"""Architecture adapters: where a family keeps its decoder layers and which config keys follow them.

Edits are written once against this interface; family differences live here only.
"""

from dataclasses import dataclass

from torch import nn

from compressor.errors import UserError


@dataclass(frozen=True)
class ArchitectureAdapter:
    model_type: str
    # config keys holding one entry per decoder layer (kept in sync when layers change)
    per_layer_config_keys: tuple[str, ...] = ("layer_types",)
    # RMSNorm modules inside a decoder layer, in order (EXAONE-4 uses post-norms, Llama pre-norms)
    layer_norm_names: tuple[str, ...] = ("input_layernorm", "post_attention_layernorm")
    # per-head norms on q and k (EXAONE-4 QK-norm); shared across heads, width head_dim
    qk_norm_names: tuple[str, ...] = ()
    pre_norm: bool = True

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
    ),
}


def adapter_for(config) -> ArchitectureAdapter:
    model_type = getattr(config, "model_type", None)
    if model_type not in ADAPTERS:
        raise UserError(
            f"model type {model_type!r} is not supported (supported: {', '.join(sorted(ADAPTERS))})"
        )
    return ADAPTERS[model_type]
