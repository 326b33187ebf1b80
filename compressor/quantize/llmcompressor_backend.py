"""The llm-compressor backend of `quantize`: modifiers from the stage parameters, `oneshot` in memory, then
the model compressed in its storage dtype (compressor.quantize.compress); `write_model` saves it in the
compressed-tensors format. A compressed model decompresses itself on its next forward pass.
"""

import contextlib
import time

import torch

from compressor.models.offload import cast_floats_in_place, input_device, is_offloaded
from compressor.quantize.calibration_data import quant_calibration_windows
from compressor.quantize.compress import compress_in_dtype
from compressor.quantize.quiet import quiet_loguru
from compressor.quantize.schemes import compressed_tensors_scheme, kv_cache_args


@contextlib.contextmanager
def kept_offloaded(offloaded: bool):
    """llm-compressor's data-free pipeline (round-to-nearest) first dispatches the model onto the devices it finds,
    which onloads every offloaded weight; an offloaded model is left as it is instead: quantizing a weight onloads
    only that module. (The sequential pipeline, for calibrated schemes, onloads one layer at a time anyway; both
    take accelerate's offloading over as compressed-tensors' own.)"""
    if not offloaded:
        yield
        return
    from compressed_tensors.utils import patch_attr
    from llmcompressor.pipelines.data_free import pipeline as data_free

    with patch_attr(data_free, "dispatch_model", lambda model: model):
        yield


def build_modifiers(params, adapter) -> list:
    """SmoothQuant (when asked), then GPTQ or round-to-nearest quantization of every Linear but `ignore`, with
    the KV-cache scheme (calibrated k_scale / v_scale per attention layer) when asked."""
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
    from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier

    modifiers = []
    if params.smoothquant is not None:
        mappings = [[list(balance), smooth] for balance, smooth in adapter.smoothquant_mappings]
        modifiers.append(SmoothQuantModifier(smoothing_strength=params.smoothquant, mappings=mappings))
    groups = {"group_0": compressed_tensors_scheme(params.scheme, params.group_size, ["Linear"], params.observer)}
    common = dict(config_groups=groups, ignore=list(params.ignore),
                  kv_cache_scheme=kv_cache_args(params.kv_cache, params.observer) if params.kv_cache else None)
    if params.method == "gptq":
        modifiers.append(GPTQModifier(**common, dampening_frac=params.dampening))
    else:
        modifiers.append(QuantizationModifier(**common))
    return modifiers


def describe_modifiers(modifiers) -> list[dict]:
    """The modifiers as plain data (for the report; llm-compressor's own recipe YAML is not safe-loadable)."""
    described = []
    for modifier in modifiers:
        fields = modifier.model_dump(mode="json", exclude_unset=True)
        described.append({"modifier": type(modifier).__name__,
                          **{k: v for k, v in fields.items() if not k.endswith("_")}})  # drop lifecycle state
    return described


def calibration_dataset(tokenizer, spec):
    from datasets import Dataset

    windows = quant_calibration_windows(tokenizer, spec)
    ids = [w[0].tolist() for w in windows]
    return Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(i) for i in ids]})


def quantize_llmcompressor(model, tokenizer, params, ctx):
    from llmcompressor import oneshot  # first, so its import-time logger setup precedes quiet_loguru

    with quiet_loguru():
        modifiers = build_modifiers(params, ctx.adapter)
        dataset = None
        if params.needs_calibration:
            ctx.progress(f"quantize: calibration data, {params.calibration.describe()}")
            dataset = calibration_dataset(tokenizer, params.calibration)
        offloaded = is_offloaded(model)
        if input_device(model).type == "cpu" and model.dtype != torch.float32:
            # calibrate in fp32 on CPU: half-precision matmuls there are slow
            model = cast_floats_in_place(model, torch.float32) if offloaded else model.float()
        names = " + ".join(type(m).__name__ for m in modifiers)
        ctx.progress(f"quantize: {params.scheme} ({names}) with llm-compressor")
        start = time.perf_counter()
        with kept_offloaded(offloaded):
            model = oneshot(model=model, tokenizer=tokenizer, recipe=modifiers, dataset=dataset,
                            num_calibration_samples=len(dataset) if dataset is not None else 0,
                            shuffle_calibration_samples=False, max_seq_length=params.calibration.seq_len)
        seconds = time.perf_counter() - start
        model = compress_in_dtype(model, getattr(torch, params.storage_dtype))
    ctx.record(scheme=params.scheme, backend="llmcompressor", method=params.method, dtype=params.storage_dtype,
               observer=params.observer, kv_cache=params.kv_cache,
               calibration=params.calibration.describe() if dataset is not None else None,
               smoothquant_mappings=[list(m) for m in ctx.adapter.smoothquant_mappings] if params.smoothquant else None,
               oneshot_seconds=round(seconds, 2), modifiers=describe_modifiers(modifiers))
    return model
