"""`quantize`: 8-bit (and 4-bit) weights, optionally activations, in a format the serving stack loads.

backend llmcompressor (default): llm-compressor `oneshot` writes compressed-tensors checkpoints vLLM
serves: w8a8-int8, fp8-dynamic, fp8 (static, calibrated), w8a16, w4a16; `method: gptq` (Frantar et al.
2022, arXiv 2210.17323) instead of round-to-nearest, `smoothquant: alpha` (Xiao et al. 2023, arXiv
2211.10438) before it, with the mappings of the architecture adapter (EXAONE-4's post-norms leave only
up_proj -> down_proj; see compressor/models/adapters.py).
backend bitsandbytes: llm-int8 and nf4 for transformers users (vLLM serves them slowly; its CPU build not at all).

`lm_head` is never quantized (always in `ignore`), embeddings are not Linear layers and stay as they are,
tied embeddings stay tied. Calibration runs in fp32 on CPU (bf16 matmuls there are ~5x slower); the weights
are then rounded once against their scales as stored in `dtype` (compressor/quantize/compress.py), the
precision of the scales and of everything left unquantized.
"""

import importlib.util
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from compressor.core.errors import UserError
from compressor.data.corpus import check_corpus
from compressor.evaluate.suite import load_suite
from compressor.models.adapters import adapter_for
from compressor.models.shape import DTYPE_BYTES
from compressor.quantize.calibration_data import QuantCalibration
from compressor.quantize.schemes import SCHEMES, layer_input_widths, schemes_for
from compressor.stages import StageParams, register

# what importing llm-compressor adds to a process (measured: 271 MB, llmcompressor 0.11.0 on torch 2.13 CPU)
LLMCOMPRESSOR_IMPORT_BYTES = 271 * 2**20

INSTALL_HINT = {
    "llmcompressor": "pip install --no-deps llmcompressor==0.11.0 (see requirements.txt; `make install` does it)",
    "bitsandbytes": "pip install bitsandbytes==0.50.2",
}


class QuantizeParams(StageParams):
    stage: Literal["quantize"]
    memory_hint: ClassVar[str] = ("fewer calibration.samples or a shorter calibration.seq_len; method rtn (GPTQ keeps "
                                  "a Hessian per layer); on a GPU (model.device: cuda) calibration is not upcast to fp32")
    scheme: Literal[tuple(SCHEMES)] = Field(description="; ".join(f"{k}: {v.description}" for k, v in SCHEMES.items()))
    backend: Literal["llmcompressor", "bitsandbytes"] = Field("llmcompressor", validate_default=True)
    method: Literal["rtn", "gptq"] = Field("rtn", description="rtn = round to nearest; gptq = GPTQ on calibration data")
    smoothquant: float | None = Field(None, gt=0, lt=1, description="SmoothQuant migration strength alpha (e.g. 0.8)")
    group_size: int | None = Field(None, gt=0, description="w8a16/w4a16: columns per scale (default: one per channel)")
    dampening: float = Field(0.01, gt=0, le=1, description="GPTQ: fraction of the mean Hessian diagonal added to it")
    ignore: list[str] = Field(default_factory=lambda: ["lm_head"],
                              description="Linear layers left unquantized (names or re:patterns); lm_head always")
    dtype: Literal["bfloat16", "float16"] | None = Field(
        None, description="storage of the unquantized tensors and scales (default bfloat16; llm-int8: float16)")
    observer: Literal["minmax", "mse"] = Field(
        "minmax", description="how scales are chosen: minmax (the observed range) or mse (the clipping range with "
                              "the least squared error); weights, static activations and the KV cache")
    kv_cache: Literal["fp8", "int8"] | None = Field(
        None, description="quantize the KV cache: calibrated per-tensor k/v scales written as the checkpoint's "
                          "kv_cache_scheme (vLLM reads fp8 only; int8 is refused by it)")
    calibration: QuantCalibration = Field(default_factory=QuantCalibration)

    # field validators run in declaration order and see the fields before them (info.data), so each error
    # names the field it is about: `stages[0].backend: scheme 'fp8' is not available with backend bitsandbytes`
    @field_validator("backend")
    @classmethod
    def _scheme_has_backend(cls, backend, info):
        scheme = info.data.get("scheme")
        if scheme and SCHEMES[scheme].backend != backend:
            hint = f"; {scheme} needs backend: {SCHEMES[scheme].backend}" if backend == "llmcompressor" else ""
            raise ValueError(f"scheme {scheme!r} is not available with backend {backend} "
                             f"(it has: {', '.join(schemes_for(backend))}){hint}")
        return backend

    @field_validator("method")
    @classmethod
    def _method_for_backend(cls, method, info):
        if method != "rtn" and info.data.get("backend") == "bitsandbytes":
            raise ValueError("backend bitsandbytes quantizes round-to-nearest only")
        return method

    @field_validator("smoothquant")
    @classmethod
    def _smoothquant_for_activations(cls, alpha, info):
        scheme = info.data.get("scheme")
        if alpha is not None and scheme and SCHEMES[scheme].activations is None:
            raise ValueError(f"SmoothQuant eases activation quantization; {scheme} keeps activations in 16 bit")
        if alpha is not None and info.data.get("backend") == "bitsandbytes":
            raise ValueError("SmoothQuant runs with backend llmcompressor")
        return alpha

    @field_validator("group_size")
    @classmethod
    def _group_size_for_grouped(cls, group_size, info):
        scheme = info.data.get("scheme")
        if group_size is not None and scheme and not SCHEMES[scheme].grouped:
            raise ValueError(f"group_size applies to w8a16 and w4a16, not {scheme} (its scales are fixed)")
        return group_size

    @field_validator("ignore")
    @classmethod
    def _lm_head_always(cls, ignore, info):
        if info.data.get("backend") == "bitsandbytes" and any(entry.startswith("re:") for entry in ignore):
            raise ValueError("backend bitsandbytes takes module names, not re: patterns")
        return ignore if "lm_head" in ignore else ["lm_head", *ignore]

    @field_validator("observer", "kv_cache")
    @classmethod
    def _llmcompressor_only(cls, value, info):
        if value not in (None, "minmax") and info.data.get("backend") == "bitsandbytes":
            raise ValueError(f"{info.field_name} {value} needs backend llmcompressor (bitsandbytes has no observers "
                             "or KV-cache schemes)")
        return value

    def offload_problem(self) -> str | None:
        if self.backend == "bitsandbytes":  # it rebuilds the model from a full state dict in memory
            return "backend bitsandbytes quantizes the whole model in memory (use backend llmcompressor)"
        return None

    @property
    def needs_calibration(self) -> bool:
        return (SCHEMES[self.scheme].calibrated or self.method == "gptq" or self.smoothquant is not None
                or self.kv_cache is not None)

    @property
    def storage_dtype(self) -> str:
        return self.dtype or ("float16" if self.scheme == "llm-int8" else "bfloat16")

    def check_config(self, config) -> None:
        if importlib.util.find_spec(self.backend) is None:
            raise ValueError(f"backend {self.backend} is not installed: {INSTALL_HINT[self.backend]}")
        if self.group_size is not None:
            widths = layer_input_widths(config)
            bad = {where: width for where, width in widths.items() if width % self.group_size}
            if bad:
                listed = ", ".join(f"{where} = {width}" for where, width in bad.items())
                all_widths = ", ".join(map(str, sorted(set(widths.values()))))
                raise ValueError(f"group_size {self.group_size} does not divide the input width of every quantized "
                                 f"layer ({listed}); use a divisor of {all_widths} "
                                 f"or leave group_size unset for one scale per output channel")
        if self.smoothquant is not None:
            if not adapter_for(config).smoothquant_mappings:
                raise ValueError(f"no SmoothQuant mappings for model type {config.model_type!r}")
        if self.needs_calibration:
            self._check_calibration_source()

    def working_memory(self, before, after, device_type: str) -> dict[str, int]:
        parts = {}
        if self.backend == "llmcompressor":
            parts["llm-compressor libraries"] = LLMCOMPRESSOR_IMPORT_BYTES
            if device_type == "cpu" and before.dtype != "float32":
                parts["fp32 copy for calibration"] = before.params * 4
            width = 4 if device_type == "cpu" else before.bytes_per_param
            if self.needs_calibration:
                calibration = self.calibration
                # the sequential pipeline keeps every sample's input to the layer being calibrated
                parts["cached layer inputs"] = calibration.samples * calibration.seq_len * before.hidden * width * 2
                parts["calibration forward"] = before.forward_bytes(1, calibration.seq_len, width)
            if self.method == "gptq":
                parts["GPTQ Hessians (one layer)"] = max(
                    (sum(lin.in_features ** 2 for lin in layer) * 4 for layer in before.layer_linears), default=0)
        parts["quantized copy"] = self.weights_after(before, before.weights_bytes)
        return parts

    def weights_after(self, shape, held: int) -> int:
        """Quantized linears at the scheme's bits with one scale per output channel (or group); lm_head,
        embeddings, norms in the storage dtype."""
        storage = DTYPE_BYTES[self.storage_dtype]
        linear = shape.linear_params()
        per_row = [(lin.out_features, lin.in_features) for layer in shape.layer_linears for lin in layer]
        scales = sum(rows * max(1, cols // (self.group_size or cols)) for rows, cols in per_row) * storage
        return linear * SCHEMES[self.scheme].weight_bits // 8 + scales + (shape.params - linear) * storage

    def _check_calibration_source(self) -> None:
        try:
            if self.calibration.suite:
                load_suite(self.calibration.suite)
            else:
                check_corpus(self.calibration.split, self.calibration.corpus)
        except UserError as error:
            raise ValueError(f"calibration: {error}") from None


@register(QuantizeParams)
def quantize(model, tokenizer, params: QuantizeParams, ctx):
    if params.backend == "bitsandbytes":
        from compressor.quantize.bitsandbytes_backend import quantize_bitsandbytes

        return quantize_bitsandbytes(model, params, ctx)
    from compressor.quantize.llmcompressor_backend import quantize_llmcompressor

    return quantize_llmcompressor(model, tokenizer, params, ctx)
