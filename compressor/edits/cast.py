"""`cast`: change the floating-point dtype of every weight (fp16 / bf16 / fp32)."""

from typing import Literal

import torch

from compressor.models.offload import cast_floats_in_place, is_offloaded
from compressor.stages import StageParams, register

DTYPES = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float32": torch.float32, "fp32": torch.float32}


class CastParams(StageParams):
    stage: Literal["cast"]
    dtype: Literal["float16", "fp16", "bfloat16", "bf16", "float32", "fp32"]

    def planned_config(self, config):
        config.dtype = str(DTYPES[self.dtype]).removeprefix("torch.")
        return config

    def working_memory(self, before, after, device_type: str) -> dict[str, int]:
        return {"cast copy": after.weights_bytes}


@register(CastParams)
def cast(model, tokenizer, params: CastParams, ctx):
    dtype = DTYPES[params.dtype]
    model = cast_floats_in_place(model, dtype) if is_offloaded(model) else model.to(dtype)
    model.config.dtype = dtype
    ctx.record(dtype=str(dtype).removeprefix("torch."))
    return model
