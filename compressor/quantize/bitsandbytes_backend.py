"""The bitsandbytes backend of `quantize`: LLM.int8() or NF4 through transformers' own quantizer.

transformers quantizes while loading, so the in-memory model is reloaded from its own state dict with a
`BitsAndBytesConfig` (no file is written). The result saves and reloads with the stock loader (transformers
on CPU or CUDA); vLLM serves bitsandbytes checkpoints slowly on GPUs and its CPU build (0.32) rejects them
("Unknown quantization method: bitsandbytes"), so prefer the llm-compressor schemes there.
"""

import torch

VLLM_NOTE = ("bitsandbytes checkpoints are for transformers: vLLM serves them slowly on GPUs, and its CPU build "
             "does not load them (unknown quantization method)")


def bitsandbytes_config(params):
    from transformers import BitsAndBytesConfig

    if params.scheme == "llm-int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(params.ignore))
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_compute_dtype=getattr(torch, params.storage_dtype),
                              llm_int8_skip_modules=list(params.ignore))


def quantize_bitsandbytes(model, params, ctx):
    dtype = getattr(torch, params.storage_dtype)
    device = next(model.parameters()).device
    ctx.progress(f"quantize: {params.scheme} with bitsandbytes")
    kwargs = {"device_map": {"": device}} if device.type == "cuda" else {}
    quantized = type(model).from_pretrained(None, config=model.config, state_dict=model.state_dict(),
                                            quantization_config=bitsandbytes_config(params), dtype=dtype, **kwargs)
    quantized.config.dtype = dtype
    quantized.generation_config = model.generation_config
    ctx.record(scheme=params.scheme, backend="bitsandbytes", dtype=params.storage_dtype, note=VLLM_NOTE)
    return quantized.eval()
