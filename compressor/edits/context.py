"""`context`: serve the model with a shorter context (`max_position_embeddings`), a lever of the LG Aimers
server: its vLLM takes `max_model_len` from the config, so a shorter context changes how the engine plans its
KV cache and batches (one entry went from 1,811 to 2,435 tok/s with 65,536 -> 16,384; DESIGN.md).

The weights are untouched and the RoPE frequencies stay exactly as they were: types whose math falls back to
`max_position_embeddings` when `rope_scaling` names no `original_max_position_embeddings` (yarn) get the
source's value written there; dynamic NTK only rescales past `max_position_embeddings`, which the shorter
context never reaches; longrope's attention factor follows the ratio of the two lengths, so it is refused.
Before any weights load, the recipe's eval suite is checked: its longest prompt (as lm-eval renders it, chat
template included) plus `min_answer_tokens` must fit, and a task whose own answer budget no longer fits is
named in a warning (lm-eval then cuts the prompt's start to keep that budget); so is a task whose prompts did
not fit the source's context either (not this stage's doing).
"""

import copy
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from compressor.core.validation import MAX_TOKENS
from compressor.stages import StageParams, register

# rope types whose frequencies read original_max_position_embeddings from rope_scaling, else max_position_embeddings
_READS_ORIGINAL = {"yarn"}
_REFUSED = {"longrope": "its attention factor follows max_position_embeddings / original_max_position_embeddings"}


def rope_type(config) -> str | None:
    scaling = getattr(config, "rope_scaling", None) or {}
    return scaling.get("rope_type") or scaling.get("type")


class ContextParams(StageParams):
    stage: Literal["context"]
    max_position_embeddings: int | None = Field(None, gt=0, le=MAX_TOKENS, description="the new context, in tokens")
    fraction: float | None = Field(None, gt=0, le=1, description="the new context as a fraction of the source's")
    at_most: int | None = Field(None, gt=0, le=MAX_TOKENS, description="cap the context at this many tokens (a "
                                "source with fewer positions keeps its own: the same recipe for every model size)")
    min_answer_tokens: int = Field(32, gt=0, le=MAX_TOKENS,
                                   description="tokens left for the answer after the eval suite's longest prompt")
    checks_prompts: ClassVar[bool] = True

    @model_validator(mode="after")
    def _one_length(self):
        given = [v for v in (self.max_position_embeddings, self.fraction, self.at_most) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of max_position_embeddings (tokens), fraction (of the source's) "
                             "or at_most (a cap)")
        return self

    def length_for(self, config) -> int:
        source = config.max_position_embeddings
        if self.at_most is not None:
            return min(source, self.at_most)
        return self.max_position_embeddings if self.fraction is None else max(1, int(source * self.fraction))

    def check_config(self, config) -> None:
        source = getattr(config, "max_position_embeddings", None)
        if not source:
            raise ValueError("the model's config has no max_position_embeddings to shorten")
        length = self.length_for(config)
        if length > source:
            raise ValueError(f"max_position_embeddings {length} > the source's {source}: a context can only shrink "
                             "(longer than trained needs RoPE scaling, not this stage)")
        kind = rope_type(config)
        if kind in _REFUSED:
            raise ValueError(f"rope_scaling type {kind}: {_REFUSED[kind]}, so a shorter context would change it")

    def planned_config(self, config):
        planned = copy.deepcopy(config)
        set_context(planned, self.length_for(config))
        return planned

    def check_prompts(self, before, after, prompts) -> list[str]:
        """Refuse (ValueError) a shorter context that cannot hold the suite's longest prompt plus
        `min_answer_tokens`; warnings for tasks whose answer budget no longer fits. Nothing when unchanged."""
        length, warnings = after.max_position_embeddings, []
        if length >= before.max_position_embeddings:
            return []
        for task in prompts():
            if task.longest_prompt + self.min_answer_tokens > before.max_position_embeddings:
                warnings.append(f"{task.task}: its longest prompt ({task.longest_prompt} tokens) is already over the "
                                f"source's {before.max_position_embeddings} positions; lm-eval cuts it either way")
                continue
            if task.longest_prompt + self.min_answer_tokens > length:
                raise ValueError(f"max_position_embeddings {length} cannot hold {task.task}'s longest prompt "
                                 f"({task.longest_prompt} tokens) plus min_answer_tokens {self.min_answer_tokens}; "
                                 f"use at least {task.longest_prompt + self.min_answer_tokens}")
            if task.longest_prompt + task.max_gen_toks > length:
                warnings.append(f"{task.task}: its longest prompt ({task.longest_prompt} tokens) leaves "
                                f"{length - task.longest_prompt} of its {task.max_gen_toks} answer tokens; lm-eval "
                                "cuts that prompt's start to keep the budget")
        return warnings


def set_context(config, length: int) -> None:
    """Set max_position_embeddings, pinning what RoPE read from the old value."""
    if rope_type(config) in _READS_ORIGINAL and "original_max_position_embeddings" not in config.rope_scaling:
        config.rope_scaling = {**config.rope_scaling, "original_max_position_embeddings": config.max_position_embeddings}
    config.max_position_embeddings = length


@register(ContextParams)
def context(model, tokenizer, params: ContextParams, ctx):
    source = model.config.max_position_embeddings
    length = params.length_for(model.config)
    set_context(model.config, length)
    if getattr(tokenizer, "model_max_length", 0) and tokenizer.model_max_length > length:
        tokenizer.model_max_length = length
    ctx.record(source_max_position_embeddings=source, max_position_embeddings=length,
               rope_scaling=getattr(model.config, "rope_scaling", None))
    return model
