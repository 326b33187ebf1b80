"""LoRA healing (Hu et al. 2021, arXiv 2106.09685): distil into low-rank adapters, then merge them.

Each targeted projection W gets W + (alpha / rank) * B A with A [rank, in], B [out, rank] (B starts at zero, so
the wrapped student computes exactly what it did); only A and B train, in fp32 (peft upcasts them), while the
base weights stay frozen in their own dtype: gradients and AdamW state exist for the adapters alone. After
training the adapters are merged into W (`merge_and_unload`) and the model is a plain transformers model again,
with the same state-dict keys and shapes as before. Targets are named through the architecture adapter: the
attention and MLP projections of the decoder layers, never the embeddings or the head.
"""

from pydantic import Field, field_validator

from compressor.core.validation import Strict
from compressor.models.adapters import ArchitectureAdapter

INSTALL_HINT = "pip install -e '.[heal]' (peft==0.21.0; `make install` does it)"


class LoraSettings(Strict):
    rank: int = Field(16, ge=1, le=1024, description="adapter rank r")
    alpha: float = Field(32, gt=0, le=2**16, description="scaling: the update is (alpha / rank) * B A")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapters' input while training")
    target_modules: list[str] | None = Field(None, min_length=1, description="projection names (e.g. q_proj, "
                                             "down_proj); default: every attention and MLP projection")

    @field_validator("target_modules")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("has duplicates")
        return value


def projection_names(adapter: ArchitectureAdapter) -> tuple[str, ...]:
    """Every linear projection of a decoder layer, attention then MLP."""
    return (*adapter.attn_in_names, adapter.attn_out_name, *adapter.mlp_in_names, adapter.mlp_out_name)


def check_targets(settings: LoraSettings, adapter: ArchitectureAdapter) -> None:
    known = projection_names(adapter)
    for name in settings.target_modules or ():
        if name not in known:
            raise ValueError(f"lora.target_modules: unknown projection {name[:100]!r} "
                             f"(a {adapter.model_type} layer has {', '.join(known)})")


def target_paths(model, adapter: ArchitectureAdapter, names) -> list[str]:
    """Full module names of the projections `names` in every decoder layer (exact, so nothing else matches)."""
    path_of = {id(module): path for path, module in model.named_modules()}
    paths = []
    for layer in adapter.decoder_layers(model):
        for block, projections in ((adapter.attention(layer), (*adapter.attn_in_names, adapter.attn_out_name)),
                                   (adapter.mlp(layer), (*adapter.mlp_in_names, adapter.mlp_out_name))):
            paths += [path_of[id(getattr(block, name))] for name in projections if name in names]
    return paths


def wrap(model, adapter: ArchitectureAdapter, settings: LoraSettings, seed: int):
    """The model with LoRA adapters on its projections (a peft model; `model` itself is changed in place)."""
    import torch
    from peft import LoraConfig, get_peft_model

    names = settings.target_modules or projection_names(adapter)
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=target_paths(model, adapter, names), bias="none", task_type="CAUSAL_LM")
    torch.manual_seed(seed)  # the adapters' A is drawn at random
    return get_peft_model(model, config)


def adapter_parameters(peft_model) -> list:
    """What trains: peft leaves requires_grad on the adapters only."""
    return [p for p in peft_model.parameters() if p.requires_grad]


def merge(peft_model):
    """Fold the adapters into the base weights; the plain transformers model, no peft modules or config left."""
    model = peft_model.merge_and_unload(safe_merge=True)
    if hasattr(model, "peft_config"):
        del model.peft_config
    return model
