"""What `compressor prompt discover|compress` do (the CLI only parses and renders)."""

import shutil
import time
from pathlib import Path

from compressor.core.atomic import atomic_dir, atomic_file, refuse_existing
from compressor.core.errors import UserError
from compressor.core.layout import HEATMAP_FILE, MODEL_DIR, PROMPT_SPEC_FILE, ZIP_NAME, resolve
from compressor.models.adapters import adapter_for
from compressor.models.checkpoint import check_model_folder
from compressor.models.sources import load_model, pick_device, pick_dtype
from compressor.prompt.discovery import discover
from compressor.prompt.heatmap import heatmap_png
from compressor.prompt.methods import METHODS
from compressor.prompt.selection import budget


def discover_folder(folder: Path, params, out: Path | None = None, force: bool = False, device: str = "auto",
                    progress=lambda m: None) -> dict:
    """Discover evaluator heads of FOLDER's model; write prompt_compressor.json into the output's model/
    (FOLDER when it is an output of `apply`, else a copy under OUT) and the heatmap beside it."""
    import torch
    from transformers import AutoConfig

    started = time.perf_counter()
    resolved = resolve(folder)
    model_dir = resolved.model
    if out is None and not resolved.is_output:
        raise UserError(f"{folder}: a model folder, not an output of `compressor apply`; pass --out OUT "
                        f"(the source model is never modified)")
    if out is None:
        refuse_existing(model_dir / PROMPT_SPEC_FILE, force)
        if (Path(folder) / ZIP_NAME).exists() and not force:
            raise UserError(f"{folder}: already packaged ({ZIP_NAME}); discovering heads changes model/ and leaves "
                            f"that zip stale (pass --force, then run `compressor package` again)")
    else:
        refuse_existing(Path(out), force)
    check_model_folder(model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    adapter = adapter_for(config)
    try:
        params.check_config(config)
    except ValueError as error:
        raise UserError(f"options: {error}") from None

    progress(f"loading {model_dir}")
    model, tokenizer = load_model(model_dir, pick_device(device), torch.float32)
    spec = discover(model, tokenizer, adapter, params, progress=progress)
    del model
    png = heatmap_png(spec.head_scores, spec.layer, spec.heads)
    data = spec.model_dump_json(indent=2) + "\n"
    stale = None
    if out is None:
        target = Path(folder)
        with atomic_file(model_dir / PROMPT_SPEC_FILE, force=True) as tmp:
            tmp.write_text(data)
        with atomic_file(target / HEATMAP_FILE, force=True) as tmp:
            tmp.write_bytes(png)
        if (target / ZIP_NAME).exists():
            stale = str(target / ZIP_NAME)
            progress(f"warning: {stale} predates {PROMPT_SPEC_FILE}: run `compressor package` again")
    else:
        target = Path(out)
        with atomic_dir(target, force=force) as staging:
            progress(f"copying {model_dir} to {target / MODEL_DIR}")
            shutil.copytree(model_dir, staging / MODEL_DIR)
            (staging / MODEL_DIR / PROMPT_SPEC_FILE).write_text(data)
            (staging / HEATMAP_FILE).write_bytes(png)
    return {"output": str(target), "spec_file": str(target / MODEL_DIR / PROMPT_SPEC_FILE),
            "heatmap": str(target / HEATMAP_FILE), "layer": spec.layer, "heads": spec.heads,
            "n_o": spec.n_o, "kernel": spec.kernel, "layer_scores": spec.layer_scores, "stale_zip": stale,
            "seconds": round(time.perf_counter() - started, 2)}


def load_compressor(folder: Path, method: str = "ehpc", runtime: str = "torch", device: str = "cpu",
                    dtype: str = "float32"):
    """A compressor of `method` for FOLDER (EHPC needs its prompt_compressor.json; baselines its tokenizer).

    runtime "onnxruntime": EHPC's scores from FOLDER/onnx/scorer.onnx (`compressor export onnx`) instead of torch.
    device and dtype place the torch scoring model (EHPC's layers 0..L*, LLMLingua's whole model).
    """
    # each method's module imports only when chosen: llmlingua, onnxruntime and the scorer are optional or heavy
    if runtime == "onnxruntime" and method == "ehpc":
        from compressor.prompt.onnx_scorer import OnnxPromptCompressor

        return OnnxPromptCompressor.from_pretrained(folder)
    if runtime != "torch":
        raise UserError(f"runtime {runtime!r}: only torch, or onnxruntime with method ehpc")
    torch_dtype = pick_dtype(dtype)
    device = str(pick_device(device))
    if method == "ehpc":
        from compressor.prompt.compressor import PromptCompressor

        return PromptCompressor.from_pretrained(folder, device=device, dtype=torch_dtype)
    resolve(folder)
    if method == "random":
        from compressor.prompt.baselines import RandomKeep

        return RandomKeep.from_pretrained(folder)
    if method == "ends":
        from compressor.prompt.baselines import KeepEnds

        return KeepEnds.from_pretrained(folder)
    if method == "llmlingua":
        from compressor.prompt.llmlingua_baseline import LLMLinguaCompressor

        return LLMLinguaCompressor.from_pretrained(folder, device, torch_dtype)
    if method == "longllmlingua":
        from compressor.prompt.llmlingua_baseline import LongLLMLinguaCompressor

        return LongLLMLinguaCompressor.from_pretrained(folder, device, torch_dtype)
    raise UserError(f"unknown method {method!r} (known: {', '.join(METHODS)})")


def check_compress_args(text: str, rate, target_tokens) -> None:
    """The cheap checks, before any model is loaded."""
    if not text or not text.strip():
        raise UserError("empty prompt: nothing to compress")
    budget(10**9, rate if rate is not None or target_tokens is not None else 0.5, target_tokens)
