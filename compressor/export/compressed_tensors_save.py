"""Save a model carrying compressed-tensors quantization (what llm-compressor leaves) in compressed form.

The weights are compressed in place unless they already are (int8 / fp8 tensors, int4 packed in int32,
with their scales), the model is saved with the class's own `save_pretrained`, and `quantization_config`
is written into config.json: the format vLLM and transformers load. llm-compressor's wrapper around
`save_pretrained` does the same but also writes its `recipe.yaml` (python tuples, not safe-loadable) into
the folder; the modifiers are recorded in report.json instead. A compressed model decompresses itself on
its next forward pass, so the in-memory model stays usable.
"""

from pathlib import Path

from compressor.quantize.quiet import quiet_loguru


def is_compressed_tensors_quantized(model) -> bool:
    return any(getattr(module, "quantization_scheme", None) is not None for module in model.modules())


def save_compressed(model, folder: Path, **save_kwargs) -> None:
    """Compress what is not compressed yet (the quantize stage already did), save, write quantization_config."""
    from compressed_tensors import ModelCompressor
    from compressed_tensors.offload import from_accelerate, to_accelerate
    from compressed_tensors.quantization import QuantizationStatus

    with quiet_loguru():
        compressor = ModelCompressor.from_pretrained_model(model)
        statuses = {getattr(m, "quantization_status", None) for m in model.modules()
                    if getattr(m, "quantization_scheme", None) is not None}
        if statuses != {QuantizationStatus.COMPRESSED}:
            compressor.compress_model(model)
        to_accelerate(model)  # offloaded modules (large models on a GPU) save without onloading everything
        try:
            type(model).save_pretrained(model, folder, **save_kwargs)
        finally:
            from_accelerate(model)
        compressor.update_config(str(folder))
