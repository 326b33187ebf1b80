"""`heal`: knowledge distillation from the unpruned model into the edited one, on local text.

The teacher is the source model as loaded, before any stage: the pipeline keeps a frozen copy in
`ctx.teacher` when a recipe has a stage that `needs_teacher` (so the stage itself reads no files).
Loss: KL(teacher || student) on logits at temperature T (Hinton et al. 2015), as Minitron heals its
pruned models (arXiv 2407.14679, Sec. 2.4 / 2408.11796: logit-only KD), plus an optional MSE on the
last hidden state (through a least-squares-initialised linear map when the widths differ).
Text: the calibration split of the local corpus, packed into windows; a few documents are held back
to measure the KD loss before and after. The evaluation splits are refused.
`method: lora` trains low-rank adapters instead of every weight (LoRA, Hu et al. 2021, arXiv 2106.09685) for
models whose full fine-tuning does not fit, and merges them before the model is written (compressor/heal/lora.py).
"""

import importlib.util
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from compressor.core.validation import MAX_COUNT, MAX_STEPS, MAX_TOKENS
from compressor.data.corpus import SPLITS, Corpus, load_corpus
from compressor.heal.data import EVALUATION_SPLITS, train_and_holdout
from compressor.heal.loop import distill
from compressor.heal.lora import INSTALL_HINT, LoraSettings, adapter_parameters, check_targets, merge, wrap
from compressor.models.adapters import adapter_for
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
    method: Literal["full", "lora"] = Field("full", description="full: train every weight; lora: train low-rank "
                                                                "adapters on the projections, merged after")
    lora: LoraSettings | None = Field(None, description="LoRA settings (method lora; defaults when left out)")

    @field_validator("split")
    @classmethod
    def _not_evaluation(cls, value: str) -> str:
        if value not in SPLITS:
            raise ValueError(f"unknown corpus split {value!r} (known: {', '.join(SPLITS)})")
        if value in EVALUATION_SPLITS:
            raise ValueError(f"split {value!r} is read by the evaluation; heal on another split (e.g. calibration)")
        return value

    @model_validator(mode="after")
    def _lora_needs_method_lora(self):
        if self.lora is not None and self.method != "lora":
            raise ValueError("`lora:` settings apply to `method: lora` (this stage has method full)")
        return self

    memory_hint: ClassVar[str] = ("method: lora (adapters only get gradients and AdamW state), "
                                  "gradient_checkpointing: true, a smaller batch or seq_len")

    def working_memory(self, before, after, device_type: str) -> dict[str, int]:
        """AdamW training of the student beside the frozen teacher (held by the pipeline)."""
        if self.method == "lora":
            settings = self.lora or LoraSettings()
            wanted = set(settings.target_modules or ())
            trainable = sum(settings.rank * (lin.in_features + lin.out_features) for layer in before.layer_linears
                            for lin in layer if not wanted or lin.name.split(".")[-1] in wanted)
            upcast = 0  # the adapters train in fp32, the frozen base stays as it is
            # merging rebuilds each targeted weight, and safe_merge first tries it on a copy; on the CPU the freed
            # originals stay in the process (measured), on a GPU torch's cache reuses them layer after layer
            merged = before.linear_params() if device_type == "cpu" else before.largest_layer_bytes // before.bytes_per_param
            merge = 2 * merged * before.bytes_per_param
        else:
            frozen = 0 if self.train_embeddings else before.embedding_params + before.lm_head_params
            trainable = before.params - frozen
            upcast = before.params * 4 if before.dtype != "float32" else 0  # fp32 master weights
        width = 2 if self.autocast == "bf16" or (self.autocast == "auto" and device_type == "cuda") else 4
        logits = self.batch * self.seq_len * before.vocab * 4
        parts = {"gradients and AdamW state": trainable * 4 * 3,
                 "saved activations": before.training_activation_bytes(self.batch, self.seq_len, width,
                                                                       self.gradient_checkpointing),
                 # student and teacher logits, both log-softmaxes and the logits' gradient (fp32)
                 "logits": 5 * logits}
        if upcast:
            parts["fp32 master weights"] = upcast
        if self.method == "lora":
            parts["merge"] = merge
        return parts

    def offload_problem(self) -> str | None:
        return ("training would change onloaded copies that the next onload replaces; give model.max_memory room "
                "for the whole model, or leave device_map out")

    def check_config(self, config) -> None:
        positions = getattr(config, "max_position_embeddings", None)
        if positions and self.seq_len > positions:
            raise ValueError(f"seq_len {self.seq_len} > the model's {positions} positions")
        if self.method == "lora":
            if importlib.util.find_spec("peft") is None:
                raise ValueError(f"method lora needs peft, which is not installed: {INSTALL_HINT}")
            check_targets(self.lora or LoraSettings(), adapter_for(config))


@register(HealParams)
def heal(model, tokenizer, params: HealParams, ctx):
    if ctx.teacher is None:
        raise RuntimeError("heal needs the frozen source model in ctx.teacher (the pipeline provides it)")
    train, holdout = train_and_holdout(tokenizer, load_corpus(params.split, corpus=params.corpus), params.seq_len, params.holdout,
                                       params.seed)
    device = next(model.parameters()).device
    if params.method == "lora":
        return _heal_lora(model, train, holdout, params, ctx, device)
    frozen = () if params.train_embeddings else (ctx.adapter.embed_tokens(model).weight,
                                                 ctx.adapter.lm_head(model).weight)
    ctx.record(method="full", **distill(model, ctx.teacher, train, holdout, params, device, ctx.progress, frozen))
    return model


def _heal_lora(model, train, holdout, params: HealParams, ctx, device):
    settings = params.lora or LoraSettings()
    wrapped = wrap(model, ctx.adapter, settings, params.seed)
    adapters = adapter_parameters(wrapped)
    result = distill(wrapped, ctx.teacher, train, holdout, params, device, ctx.progress, trainable=adapters)
    ctx.record(method="lora", rank=settings.rank, alpha=settings.alpha, lora_params=sum(p.numel() for p in adapters),
               **result)
    return merge(wrapped)
