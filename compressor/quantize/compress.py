"""Compress a calibrated compressed-tensors model into its storage dtype, rounding each weight once.

Casting the fp32 model to bf16 first and compressing afterwards would round twice: the weights to bf16
(up to a quarter of a quantization step at the top of the int8 range) and again to the grid. Instead the
scales are cast to the storage dtype first, the fp32 weights are quantized against the scales as they
will be stored, and only then the remaining float tensors (norms, embeddings, scales) are cast. The
integer and fp8 tensors are left as they are.
"""

import torch

from compressor.models.offload import cast_floats_in_place, cast_tensor, is_offloaded

CASTABLE = (torch.float32, torch.float16, torch.bfloat16)


def cast_floats(model, dtype: torch.dtype) -> None:
    """Cast fp32/fp16/bf16 parameters and buffers to `dtype`; int8, int32 and fp8 tensors stay."""
    if is_offloaded(model):
        cast_floats_in_place(model, dtype)
        return
    for module in model.modules():
        for tensors in (module._parameters, module._buffers):
            for name, tensor in tensors.items():
                if tensor is not None and tensor.dtype in CASTABLE and tensor.dtype != dtype:
                    tensor.data = tensor.data.to(dtype)


def compress_in_dtype(model, dtype: torch.dtype):
    from compressed_tensors import ModelCompressor

    for module in model.modules():
        if getattr(module, "quantization_scheme", None) is None:
            continue
        for name, param in list(module.named_parameters(recurse=False)):
            if name != "weight" and param.dtype in CASTABLE:
                cast_tensor(module._parameters, name, dtype)  # as param.data = ..., also when offloaded
    ModelCompressor.from_pretrained_model(model).compress_model(model)
    cast_floats(model, dtype)
    model.config.dtype = dtype
    return model
