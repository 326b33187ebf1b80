"""Quantization schemes a recipe can name: what each stores, which backend runs it, what it needs.

The llm-compressor schemes map onto compressed-tensors `QuantizationScheme`s (the presets W8A8,
FP8_DYNAMIC, FP8; W8A16/W4A16 with per-channel scales or a group size, because the presets' group
of 128 does not divide every model's widths, e.g. SmolLM2's 576). The bitsandbytes schemes are
LLM.int8 (Dettmers et al. 2022, arXiv 2208.07339) and NF4 (QLoRA, Dettmers et al. 2023, arXiv 2305.14314).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Scheme:
    backend: str                 # llmcompressor | bitsandbytes
    weight_bits: int
    activations: str | None      # how activations are quantized at run time (None: weight-only)
    calibrated: bool             # needs calibration data even with round-to-nearest (static activation scales)
    preset: str | None = None    # compressed-tensors preset name
    grouped: bool = False        # takes `group_size`
    stored_weight_dtypes: tuple[str, ...] = ()  # safetensors dtypes of a quantized Linear's weight tensor
    description: str = ""


SCHEMES: dict[str, Scheme] = {
    "w8a8-int8": Scheme("llmcompressor", 8, "int8, dynamic per token", False, preset="W8A8",
                        stored_weight_dtypes=("I8",),
                        description="int8 weights (per output channel) and int8 activations (per token, dynamic)"),
    "w8a8-int8-static": Scheme("llmcompressor", 8, "int8, static per tensor", True, stored_weight_dtypes=("I8",),
                               description="int8 weights (per output channel) and int8 activations (one scale per "
                                           "tensor, calibrated)"),
    "fp8-dynamic": Scheme("llmcompressor", 8, "fp8 e4m3, dynamic per token", False, preset="FP8_DYNAMIC",
                          stored_weight_dtypes=("F8_E4M3",),
                          description="fp8 e4m3 weights (per channel), fp8 activations (per token, dynamic)"),
    "fp8": Scheme("llmcompressor", 8, "fp8 e4m3, static per tensor", True, preset="FP8",
                  stored_weight_dtypes=("F8_E4M3",),
                  description="fp8 e4m3 weights (per tensor) and activations (per tensor, scales calibrated)"),
    "w8a16": Scheme("llmcompressor", 8, None, False, grouped=True, stored_weight_dtypes=("I32",),
                    description="int8 weights (per channel or per group), activations in 16 bit"),
    "w4a16": Scheme("llmcompressor", 4, None, False, grouped=True, stored_weight_dtypes=("I32",),
                    description="int4 weights (per channel or per group, 8 packed in an int32), activations in 16 bit"),
    "llm-int8": Scheme("bitsandbytes", 8, "fp16 with int8 matmul, outlier columns in fp16", False,
                       stored_weight_dtypes=("I8",),
                       description="bitsandbytes LLM.int8(): int8 weights, outlier features kept in fp16"),
    "nf4": Scheme("bitsandbytes", 4, None, False, stored_weight_dtypes=("U8",),
                  description="bitsandbytes NF4: 4-bit NormalFloat weights in blocks of 64"),
}


def schemes_for(backend: str) -> list[str]:
    return [name for name, scheme in SCHEMES.items() if scheme.backend == backend]


# observer names (llm-compressor's registry) for `observer: minmax | mse`: weights are observed once
# (memoryless); static activation and KV-cache scales over all calibration batches (static_minmax: the running
# min and max, as the FP8 preset does; mse: the moving-average MSE-optimal clipping range)
WEIGHT_OBSERVER = {"minmax": "memoryless_minmax", "mse": "memoryless_mse"}
STATIC_OBSERVER = {"minmax": "static_minmax", "mse": "mse"}


def compressed_tensors_scheme(name: str, group_size: int | None, targets: list[str], observer: str = "minmax"):
    """The compressed-tensors QuantizationScheme for an llm-compressor scheme name, with `observer`'s
    observers on the weights and on static activations (dynamic ones have none)."""
    scheme = _scheme(name, group_size, targets)
    if observer != "minmax":
        scheme.weights.observer = WEIGHT_OBSERVER[observer]
        if scheme.input_activations is not None and not scheme.input_activations.dynamic:
            scheme.input_activations.observer = STATIC_OBSERVER[observer]
    return scheme


def _scheme(name: str, group_size: int | None, targets: list[str]):
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme, preset_name_to_scheme

    scheme = SCHEMES[name]
    if scheme.preset:
        return preset_name_to_scheme(scheme.preset, targets)
    weights = QuantizationArgs(num_bits=scheme.weight_bits, type="int", symmetric=True, dynamic=False,
                               strategy="group" if group_size else "channel", group_size=group_size)
    activations = None
    if name == "w8a8-int8-static":  # no preset: W8A8's weights with one calibrated scale per activation tensor
        activations = QuantizationArgs(num_bits=8, type="int", symmetric=True, dynamic=False, strategy="tensor",
                                       observer=STATIC_OBSERVER["minmax"])
    return QuantizationScheme(targets=targets, weights=weights, input_activations=activations)


KV_CACHE = {"fp8": "float", "int8": "int"}


def kv_cache_args(kind: str, observer: str = "minmax"):
    """compressed-tensors' `kv_cache_scheme`: 8-bit keys and values, one calibrated symmetric scale per tensor
    (k_scale / v_scale per attention layer), the form vLLM reads from a checkpoint."""
    from compressed_tensors.quantization import QuantizationArgs

    return QuantizationArgs(num_bits=8, type=KV_CACHE[kind], symmetric=True, dynamic=False, strategy="tensor",
                            observer=STATIC_OBSERVER[observer])


def layer_input_widths(config) -> dict[str, int]:
    """Input width (columns) of each decoder Linear, from the config (Llama and EXAONE-4 layouts)."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return {"q_proj/k_proj/v_proj/gate_proj/up_proj (hidden_size)": config.hidden_size,
            "o_proj (num_attention_heads x head_dim)": heads * head_dim,
            "down_proj (intermediate_size)": config.intermediate_size}
