"""`evaluator_heads` stage: find the EHPC evaluator heads (Fei et al., arXiv 2501.12959) and ship them.

The model is returned unchanged; the stage leaves `prompt_compressor.json` in the written model
folder and `prompt_heads.png` (the score heatmap) beside it, through `ctx.artifact`.
"""

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from compressor.core.layout import HEATMAP_FILE, PROMPT_SPEC_FILE
from compressor.core.validation import MAX_TOKENS
from compressor.prompt.discovery import discover
from compressor.prompt.heatmap import heatmap_png
from compressor.prompt.probes import DEPTHS, NEEDLE, QUESTION
from compressor.stages import StageParams, register


class EvaluatorHeadsParams(StageParams):
    stage: Literal["evaluator_heads"]
    memory_hint: ClassVar[str] = "a smaller probe_tokens"
    depends_on_layers = True
    heads: int | None = Field(None, gt=0, description="evaluator heads to keep, at most the model's heads per layer "
                              "(default: 8, or every head of a model with fewer)")
    n_o: int = Field(16, gt=0, le=MAX_TOKENS, description="observation window: the last N_o query positions")
    kernel: int = Field(32, gt=0, le=MAX_TOKENS, description="AvgPool1d smoothing kernel r for token scores")
    rate: float = Field(0.5, gt=0, le=1, description="default share of tokens kept by `prompt compress`")
    probe_tokens: int = Field(2048, ge=64, le=MAX_TOKENS, description="length of each discovery probe")
    depths: list[float] = Field(default_factory=lambda: list(DEPTHS), min_length=1)
    needle: str = Field(NEEDLE, min_length=1)
    question: str = Field(QUESTION, min_length=1)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    filler: Literal["en", "ko", "mixed"] = Field("en", description="the corpus the probes' filler comes from (its "
                                                  "long split): en (CPython docstrings), ko (Korean statutes, bills)")
    max_layer: int | None = Field(None, ge=0, description="search L* among layers 0..max_layer only (the scorer "
                                  "runs L*+1 layers: shallower is faster, usually less accurate)")

    @field_validator("depths")
    @classmethod
    def _depths_inside(cls, depths):
        if any(not 0 < d < 1 for d in depths):
            raise ValueError("depths must be strictly between 0 and 1")
        return depths

    def check_config(self, config) -> None:
        limit = getattr(config, "max_position_embeddings", None)
        if limit and self.probe_tokens > limit:
            raise ValueError(f"probe_tokens {self.probe_tokens} > the model's max_position_embeddings {limit}")
        if self.n_o >= self.probe_tokens // 2:
            raise ValueError(f"n_o {self.n_o} must be well below probe_tokens {self.probe_tokens}")
        if self.heads is not None and self.heads > config.num_attention_heads:
            raise ValueError(f"heads {self.heads} > the model's {config.num_attention_heads} attention heads per layer "
                             f"(use heads <= {config.num_attention_heads})")
        if self.max_layer is not None and self.max_layer >= config.num_hidden_layers:
            raise ValueError(f"max_layer {self.max_layer} >= the model's num_hidden_layers {config.num_hidden_layers} "
                             f"(layers are numbered from 0)")

    def working_memory(self, before, after, device_type: str) -> dict[str, int]:
        # each probe's forward computes every layer's attention over probe_tokens (scores of one layer at a time)
        return {"probe forward": before.forward_bytes(1, self.probe_tokens, 4)}


@register(EvaluatorHeadsParams)
def evaluator_heads(model, tokenizer, params: EvaluatorHeadsParams, ctx):
    spec = discover(model, tokenizer, ctx.adapter, params, progress=ctx.progress)
    ctx.artifact(PROMPT_SPEC_FILE, spec.model_dump(mode="json"))
    ctx.artifact(HEATMAP_FILE, heatmap_png(spec.head_scores, spec.layer, spec.heads), in_model=False)
    ctx.record(layer=spec.layer, heads=spec.heads, layer_scores=spec.layer_scores)
    return model
