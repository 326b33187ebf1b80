"""`heal`: knowledge distillation from the unpruned model into the edited one, on local text.

The teacher is the source model as loaded, before any stage: the pipeline keeps a frozen copy in
`ctx.teacher` when a recipe has a stage that `needs_teacher` (so the stage itself reads no files).
Loss: KL(teacher || student) on logits at temperature T (Hinton et al. 2015), as Minitron heals its
pruned models (arXiv 2407.14679, Sec. 2.4 / 2408.11796: logit-only KD), plus an optional MSE on the
last hidden state (through a least-squares-initialised linear map when the widths differ).
Text: the calibration split of the local corpus, packed into windows; a few documents are held back
to measure the KD loss before and after. The evaluation splits are refused.
"""

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from compressor.core.validation import MAX_COUNT, MAX_STEPS, MAX_TOKENS
from compressor.data.corpus import SPLITS, Corpus, load_corpus
from compressor.heal.data import EVALUATION_SPLITS, train_and_holdout
from compressor.heal.loop import distill
from compressor.stages import StageParams, register


class HealParams(StageParams):
    stage: Literal["heal"]
    needs_teacher: ClassVar[bool] = True

    steps: int = Field(100, gt=0, le=MAX_STEPS, description="optimizer steps")
    lr: float = Field(2e-4, gt=0, description="peak learning rate (AdamW)")
    warmup_steps: int | None = Field(None, ge=0, le=MAX_STEPS, description="linear warmup (default: 10% of steps)")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine decay ends at lr x this")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    seq_len: int = Field(256, gt=1, le=MAX_TOKENS, description="tokens per training window")
    batch: int = Field(4, gt=0, le=MAX_COUNT, description="windows per step")
    temperature: float = Field(1.0, gt=0)
    hidden_weight: float = Field(0.0, ge=0, description="weight of the last-hidden-state MSE (0 = logits only)")
    split: str = Field("calibration", description="local corpus split to train on (not an evaluation split)")
    corpus: Corpus = Field("en", description="en (CPython docstrings), ko (Korean statutes and bills) or mixed")
    holdout: int = Field(8, gt=0, le=MAX_COUNT, description="held-back windows for the before/after KD loss")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    autocast: Literal["auto", "bf16", "none"] = Field("auto", description="auto: bf16 on CUDA, none on CPU")
    gradient_checkpointing: bool = False
    train_embeddings: bool = Field(True, description="false: freeze embeddings / tied head (saves their gradient "
                                                     "and optimizer memory)")

    @field_validator("split")
    @classmethod
    def _not_evaluation(cls, value: str) -> str:
        if value not in SPLITS:
            raise ValueError(f"unknown corpus split {value!r} (known: {', '.join(SPLITS)})")
        if value in EVALUATION_SPLITS:
            raise ValueError(f"split {value!r} is read by the evaluation; heal on another split (e.g. calibration)")
        return value

    def check_config(self, config) -> None:
        positions = getattr(config, "max_position_embeddings", None)
        if positions and self.seq_len > positions:
            raise ValueError(f"seq_len {self.seq_len} > the model's {positions} positions")


@register(HealParams)
def heal(model, tokenizer, params: HealParams, ctx):
    if ctx.teacher is None:
        raise RuntimeError("heal needs the frozen source model in ctx.teacher (the pipeline provides it)")
    train, holdout = train_and_holdout(tokenizer, load_corpus(params.split, corpus=params.corpus), params.seq_len, params.holdout,
                                       params.seed)
    device = next(model.parameters()).device
    frozen = () if params.train_embeddings else (ctx.adapter.embed_tokens(model).weight,
                                                 ctx.adapter.lm_head(model).weight)
    ctx.record(**distill(model, ctx.teacher, train, holdout, params, device, ctx.progress, frozen))
    return model
