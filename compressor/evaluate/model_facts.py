"""Small facts about a loaded model and this process that every measurement records."""

import resource

import torch


def dtype_name(model) -> str:
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def half_on_cpu(model) -> bool:
    """fp16 weights on a CPU that can be upcast to fp32 exactly (a quantized model keeps its own dtypes)."""
    first = next(model.parameters())
    quantized = getattr(model.config, "quantization_config", None) is not None
    return first.device.type == "cpu" and first.dtype == torch.float16 and not quantized


def param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
