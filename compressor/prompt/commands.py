"""What `compressor prompt discover|compress` do (the CLI only parses and renders)."""

import shutil
import time
from pathlib import Path

from compressor.atomic import atomic_dir, atomic_file, refuse_existing
from compressor.errors import UserError
from compressor.prompt.spec import HEATMAP_FILE, SPEC_FILE

METHODS = ("ehpc", "llmlingua", "longllmlingua", "random", "ends")


def _model_dir(folder: Path) -> tuple[Path, bool]:
    """(model folder, is an output of `apply`)."""
    folder = Path(folder)
    if (folder / "model" / "config.json").is_file():
        return folder / "model", True
    if (folder / "config.json").is_file():
        return folder, False
    raise UserError(f"{folder}: neither an output folder (model/config.json) nor a model folder (config.json)")


def discover_folder(folder: Path, params, out: Path | None = None, force: bool = False, device: str = "auto",
                    progress=lambda m: None) -> dict:
    """Discover evaluator heads of FOLDER's model; write prompt_compressor.json into the output's model/
    (FOLDER when it is an output of `apply`, else a copy under OUT) and the heatmap beside it."""
    import torch

    from compressor.models.adapters import adapter_for
    from compressor.models.sources import pick_device
    from compressor.prompt.discovery import discover
    from compressor.prompt.heatmap import heatmap_png

    started = time.perf_counter()
    model_dir, is_output = _model_dir(folder)
    if out is None and not is_output:
        raise UserError(f"{folder}: a model folder, not an output of `compressor apply`; pass --out OUT "
                        f"(the source model is never modified)")
    if out is None:
        refuse_existing(model_dir / SPEC_FILE, force)
    else:
        refuse_existing(Path(out), force)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    adapter = adapter_for(config)
    try:
        params.check_config(config)
    except ValueError as error:
        raise UserError(f"options: {error}") from None

    from compressor.models.sources import load_model

    progress(f"loading {model_dir}")
    model, tokenizer = load_model(model_dir, pick_device(device), torch.float32)
    spec = discover(model, tokenizer, adapter, params, progress=progress)
    del model
    png = heatmap_png(spec.head_scores, spec.layer, spec.heads)
    data = spec.model_dump_json(indent=2) + "\n"
    if out is None:
        target = Path(folder)
        with atomic_file(model_dir / SPEC_FILE, force=True) as tmp:
            tmp.write_text(data)
        with atomic_file(target / HEATMAP_FILE, force=True) as tmp:
            tmp.write_bytes(png)
    else:
        target = Path(out)
        with atomic_dir(target, force=force) as staging:
            progress(f"copying {model_dir} to {target / 'model'}")
            shutil.copytree(model_dir, staging / "model")
            (staging / "model" / SPEC_FILE).write_text(data)
            (staging / HEATMAP_FILE).write_bytes(png)
    return {"output": str(target), "spec_file": str(target / "model" / SPEC_FILE),
            "heatmap": str(target / HEATMAP_FILE), "layer": spec.layer, "heads": spec.heads,
            "n_o": spec.n_o, "kernel": spec.kernel, "layer_scores": spec.layer_scores,
            "seconds": round(time.perf_counter() - started, 2)}


def load_compressor(folder: Path, method: str = "ehpc", runtime: str = "torch", device: str = "cpu",
                    dtype: str = "float32"):
    """A compressor of `method` for FOLDER (EHPC needs its prompt_compressor.json; baselines its tokenizer).

    runtime "onnxruntime": EHPC's scores from FOLDER/onnx/scorer.onnx (`compressor export onnx`) instead of torch.
    device and dtype place the torch scoring model (EHPC's layers 0..L*, LLMLingua's whole model).
    """
    if runtime == "onnxruntime" and method == "ehpc":
        from compressor.prompt.onnx_runtime import OnnxPromptCompressor

        return OnnxPromptCompressor.from_pretrained(folder)
    if runtime != "torch":
        raise UserError(f"runtime {runtime!r}: only torch, or onnxruntime with method ehpc")
    from compressor.models.sources import pick_device, pick_dtype

    torch_dtype = pick_dtype(dtype)
    device = str(pick_device(device))
    if method == "ehpc":
        from compressor.prompt.compressor import PromptCompressor

        return PromptCompressor.from_pretrained(folder, device=device, dtype=torch_dtype)
    _model_dir(folder)
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
    from compressor.prompt.selection import budget

    if not text or not text.strip():
        raise UserError("empty prompt: nothing to compress")
    budget(10**9, rate if rate is not None or target_tokens is not None else 0.5, target_tokens)
