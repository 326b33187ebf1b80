"""A model's shape from its config alone (no weights): parameter counts by part and the memory a forward,
a backward or a cache of a given size needs. The planner (compressor.plan) and the stages' own memory
estimates are written against this.

Parameter counts come from the transformers model built on the meta device (accelerate's
init_empty_weights), so they are exact for any family transformers knows. Activation sizes follow the
accounting of Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models",
arXiv 2205.05198, Sec. 4.1) for what a layer keeps for its backward pass.
"""

import copy
from dataclasses import dataclass

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int8": 1, "float8_e4m3fn": 1}


def dtype_name(value) -> str | None:
    """'bfloat16' from torch.bfloat16, 'torch.bfloat16' or 'bfloat16'; None when unset."""
    if value is None:
        return None
    return str(value).removeprefix("torch.")


def config_dtype(config) -> str:
    """The dtype the checkpoint's config states (transformers loads `dtype: auto` as this), else float32."""
    stated = dtype_name(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None))
    return stated if stated in DTYPE_BYTES else "float32"


@dataclass(frozen=True)
class Linear:
    name: str  # within its decoder layer, e.g. self_attn.q_proj
    in_features: int
    out_features: int


@dataclass(frozen=True)
class ModelShape:
    model_type: str
    num_layers: int
    hidden: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    max_positions: int | None
    params: int  # unique parameters (tied embeddings once)
    embedding_params: int
    lm_head_params: int  # 0 when tied to the embeddings
    layer_params: tuple[int, ...]
    layer_linears: tuple[tuple[Linear, ...], ...]
    dtype: str  # what the weights are held in (config's, or the recipe's model.dtype)

    @classmethod
    def from_config(cls, config, dtype: str | None = None) -> "ModelShape":
        import torch
        from accelerate import init_empty_weights
        from transformers import AutoModelForCausalLM

        config = copy.deepcopy(config)
        with init_empty_weights(include_buffers=True):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        layers = model.model.layers
        layer_params = tuple(sum(p.numel() for p in layer.parameters()) for layer in layers)
        linears = tuple(tuple(Linear(name, m.in_features, m.out_features) for name, m in layer.named_modules()
                              if isinstance(m, torch.nn.Linear)) for layer in layers)
        embedding = model.get_input_embeddings().weight
        head = model.get_output_embeddings().weight
        heads = config.num_attention_heads
        return cls(
            model_type=config.model_type, num_layers=len(layers), hidden=config.hidden_size,
            vocab=embedding.shape[0], heads=heads, kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            max_positions=getattr(config, "max_position_embeddings", None),
            params=sum(p.numel() for p in model.parameters()), embedding_params=embedding.numel(),
            lm_head_params=0 if head is embedding else head.numel(), layer_params=layer_params,
            layer_linears=linears, dtype=dtype or config_dtype(config))

    @property
    def bytes_per_param(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def weights_bytes(self) -> int:
        return self.params * self.bytes_per_param

    @property
    def largest_layer_bytes(self) -> int:
        return max(self.layer_params, default=0) * self.bytes_per_param

    @property
    def intermediate(self) -> int:
        """The widest linear output inside a layer (the MLP's up projection)."""
        return max((lin.out_features for layer in self.layer_linears for lin in layer), default=self.hidden)

    def linear_params(self) -> int:
        return sum(lin.in_features * lin.out_features for layer in self.layer_linears for lin in layer)

    def forward_bytes(self, batch: int, seq: int, dtype_bytes: int | None = None) -> int:
        """Peak transient memory of one no-grad forward pass: the logits of every position, one layer's
        working set (residual, q/k/v, the MLP's intermediate) and one layer's attention scores."""
        width = dtype_bytes or self.bytes_per_param
        logits = batch * seq * self.vocab * width
        layer = batch * seq * (4 * self.hidden + 3 * self.intermediate) * width
        scores = batch * self.heads * seq * seq * width
        return logits + layer + scores

    def training_activation_bytes(self, batch: int, seq: int, dtype_bytes: int, checkpointing: bool) -> int:
        """What a backward pass needs kept: per layer s*b*h*(34 + 5*a*s/h) bytes at 2 bytes per value
        (Korthikanti et al. 2022, eq. 1), scaled to `dtype_bytes`; with checkpointing, each layer's input
        plus one layer's full set."""
        per_layer_16bit = seq * batch * self.hidden * 34 + 5 * self.heads * seq * seq * batch
        per_layer = per_layer_16bit * dtype_bytes // 2
        if checkpointing:
            return self.num_layers * batch * seq * self.hidden * dtype_bytes + per_layer
        return self.num_layers * per_layer

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        return 2 * self.num_layers * self.kv_heads * self.head_dim * dtype_bytes
