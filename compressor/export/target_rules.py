"""Deployment check rules, keyed by the rule ids a target lists under `checks:`.

Each rule takes a `ModelDir` (config dict + safetensors headers, no tensor data) and the target,
and returns human-readable problems (empty when the rule holds).
"""

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from compressor.core.files import safetensors_header
from compressor.models.adapters import ADAPTERS


@dataclass
class ModelDir:
    folder: Path
    config: dict = field(default_factory=dict)

    @cached_property
    def safetensors_files(self) -> list[Path]:
        return sorted(self.folder.glob("*.safetensors"))

    @cached_property
    def tensors(self) -> dict[str, dict]:
        """name -> {"dtype", "shape"} from every *.safetensors header (the JSON before the data)."""
        out: dict[str, dict] = {}
        for path in self.safetensors_files:
            out.update(safetensors_header(path))
        return out


Rule = Callable[[ModelDir, Any], list[str]]
RULES: dict[str, Rule] = {}


def rule(fn: Rule) -> Rule:
    RULES[fn.__name__] = fn
    return fn


@rule
def layer_types_match(m: ModelDir, target) -> list[str]:
    """Every per-layer config list (layer_types, ...) has num_hidden_layers entries."""
    cfg = m.config
    n = cfg.get("num_hidden_layers")
    adapter = ADAPTERS.get(cfg.get("model_type"))
    keys = adapter.per_layer_config_keys if adapter else ("layer_types",)
    return [
        f"{key} has {len(cfg[key])} entries but num_hidden_layers is {n}"
        for key in keys
        if isinstance(cfg.get(key), list) and len(cfg[key]) != n
    ]


@rule
def heads_divisible(m: ModelDir, target) -> list[str]:
    """num_attention_heads is a multiple of num_key_value_heads (grouped-query attention)."""
    heads, kv = m.config.get("num_attention_heads"), m.config.get("num_key_value_heads")
    if heads and kv and heads % kv:
        return [f"num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({kv})"]
    return []


_LAYER_KEY = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:.*\.)?(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$")


@rule
def uniform_layer_shapes(m: ModelDir, target) -> list[str]:
    """Weights hold num_hidden_layers layers, each shaped as the (per-model, not per-layer) config says."""
    cfg = m.config
    hidden, heads = cfg.get("hidden_size"), cfg.get("num_attention_heads")
    kv, ffn, n = cfg.get("num_key_value_heads") or heads, cfg.get("intermediate_size"), cfg.get("num_hidden_layers")
    if not (hidden and heads and ffn and n):
        return []
    hd = cfg.get("head_dim") or hidden // heads
    expected = {"q_proj": [heads * hd, hidden], "k_proj": [kv * hd, hidden], "v_proj": [kv * hd, hidden],
                "o_proj": [hidden, heads * hd], "gate_proj": [ffn, hidden], "up_proj": [ffn, hidden],
                "down_proj": [hidden, ffn]}
    problems, layers = [], set()
    for name, info in m.tensors.items():
        match = _LAYER_KEY.search(name)
        if not match:
            continue
        layers.add(int(match.group(1)))
        if list(info["shape"]) != expected[match.group(2)]:
            problems.append(f"{name} has shape {info['shape']}, config implies {expected[match.group(2)]}")
    if layers and layers != set(range(n)):
        problems.insert(0, f"weights hold layers {sorted(layers)} but num_hidden_layers is {n}")
    return problems[:3] + ([f"... and {len(problems) - 3} more"] if len(problems) > 3 else [])


@rule
def torch_dtype_not_dtype(m: ModelDir, target) -> list[str]:
    """The dtype is under `torch_dtype`; a `dtype` key confuses the target stack."""
    if "dtype" in m.config:
        return ["config has a `dtype` key (write `torch_dtype` instead)"]
    return [] if "torch_dtype" in m.config else ["config has no `torch_dtype`"]


@rule
def transformers_version(m: ModelDir, target) -> list[str]:
    """config transformers_version equals the target runtime's transformers version."""
    want, got = target.runtime.transformers, m.config.get("transformers_version")
    return [f"transformers_version is {got!r}, the target runs {want!r}"] if want and got != want else []


_QUANT_SUFFIXES = ("weight_scale", "weight_zero_point", "weight_packed", "weight_shape", "weight_g_idx",
                   "input_scale", "input_zero_point", "output_scale")
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}


@rule
def embeddings_not_quantized(m: ModelDir, target) -> list[str]:
    """lm_head and embed_tokens stay in float: listed in quantization_config.ignore, no quantized tensors."""
    problems = []
    qc = m.config.get("quantization_config")
    if isinstance(qc, dict):
        # compressed-tensors, transformers' generic key, bitsandbytes
        ignore = qc.get("ignore") or qc.get("modules_to_not_convert") or qc.get("llm_int8_skip_modules") or []
        if not any(str(entry).endswith("lm_head") for entry in ignore):
            problems.append("quantization_config.ignore does not contain lm_head")
    for name, info in m.tensors.items():
        if "embed_tokens." in name or name.startswith("lm_head."):
            if name.rsplit(".", 1)[-1] in _QUANT_SUFFIXES or info["dtype"] not in _FLOAT_DTYPES:
                problems.append(f"{name} ({info['dtype']}) is quantized")
    return problems


@rule
def tied_embeddings_consistent(m: ModelDir, target) -> list[str]:
    """tie_word_embeddings true: no separate lm_head.weight; false: lm_head.weight exists."""
    tied = m.config.get("tie_word_embeddings", True)  # the transformers default when the key is absent
    has_head = "lm_head.weight" in m.tensors
    if tied and has_head:
        return ["tie_word_embeddings is true but the weights hold a separate lm_head.weight"]
    if not tied and not has_head:
        return ["tie_word_embeddings is false but the weights hold no lm_head.weight"]
    return []


@rule
def single_safetensors(m: ModelDir, target) -> list[str]:
    """Weights are one model.safetensors (no shards, no index)."""
    names = [p.name for p in m.safetensors_files]
    problems = [] if "model.safetensors" in names else ["model.safetensors is missing"]
    extra = [n for n in names if n != "model.safetensors"] + [p.name for p in m.folder.glob("*.safetensors.index.json")]
    if extra:
        problems.append(f"weights must be the single model.safetensors, also found {', '.join(extra)}")
    return problems


def _kv_cache_scheme(m: ModelDir) -> dict | None:
    return (m.config.get("quantization_config") or {}).get("kv_cache_scheme")


@rule
def kv_cache_scheme_loadable(m: ModelDir, target) -> list[str]:
    """A kv_cache_scheme is one vLLM uses: 8-bit float, symmetric, per tensor or head (vLLM 0.32 refuses others)."""
    scheme = _kv_cache_scheme(m)
    if not scheme:
        return []
    kind = f"{scheme.get('num_bits')}-bit {scheme.get('type')}"
    if scheme.get("type") != "float" or scheme.get("num_bits") != 8:
        return [f"kv_cache_scheme is {kind}: vLLM loads only an 8-bit float (fp8) KV-cache scheme; recent releases "
                "(0.32 here) refuse this checkpoint at load, older ones let an 8-bit int scheme past their check "
                "and ignore it (quantize with kv_cache: fp8, or without kv_cache)"]
    if not scheme.get("symmetric", False) or scheme.get("strategy") not in ("tensor", "attn_head"):
        return ["kv_cache_scheme must be symmetric with strategy tensor or attn_head for vLLM"]
    return []


@rule
def kv_cache_scheme_used(m: ModelDir, target) -> list[str]:
    """Advisory: whether the target's engine is known to use an fp8 kv_cache_scheme (it may run a 16-bit cache)."""
    scheme = _kv_cache_scheme(m)
    if not scheme or scheme.get("type") != "float":
        return []
    gpu = target.runtime.gpu or "its GPU"
    return [f"the checkpoint asks for an fp8 KV cache; whether vLLM {target.runtime.vllm or ''} on {gpu} uses it is "
            "disputed (vLLM later enabled the automatic fp8 KV switch only from compute capability 9.0; the L4 is "
            "8.9), so the server may run a 16-bit cache and the lever may not move its Score; "
            "`compressor check OUT --runtime vllm` shows what a local engine did"]
