"""What the prompt-compressor page does, without Streamlit: which folders and methods it offers, reading an
uploaded prompt, compressing, and the model's answer to a prompt (for full vs compressed side by side)."""

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path

from compressor.core.errors import UserError
from compressor.core.layout import PROMPT_SPEC_FILE, resolve
from compressor.core.paths import compressor_home
from compressor.demo.folders import has_prompt_compressor, is_sweep
from compressor.prompt.commands import check_compress_args, load_compressor
from compressor.prompt.methods import METHODS
from compressor.prompt.spec import spec_path

BUNDLED = "smollm2-135m"
LLMLINGUA_METHODS = ("llmlingua", "longllmlingua")
PASSAGE_METHODS = ("ehpc", "random", "ends")  # the ones with coarse passages (LLMLingua ranks its own way)


@dataclass(frozen=True)
class FolderChoice:
    label: str
    path: Path | None  # None: the bundled model, not materialised yet
    ehpc: bool  # carries prompt_compressor.json


def bundled_ehpc_folder() -> Path:
    """Where the app keeps the bundled model's evaluator heads once discovered (an output folder)."""
    return compressor_home() / "demo" / f"{BUNDLED}-ehpc"


def folder_choices(given) -> tuple[list[FolderChoice], list[str]]:
    """The given folders a prompt can be compressed with (outputs or model folders), then the bundled model's;
    plus one line per given folder that cannot serve (not found, not a model)."""
    choices, problems = [], []
    for folder in given:
        folder = Path(folder)
        try:
            resolve(folder)
        except UserError as error:
            if not is_sweep(folder):  # sweeps belong to the outputs page
                problems.append(str(error))
            continue
        ehpc = has_prompt_compressor(folder)
        choices.append(FolderChoice(f"{folder}" + (" (EHPC heads)" if ehpc else " (no EHPC heads: baselines)"),
                                    folder, ehpc))
    discovered = bundled_ehpc_folder()
    if has_prompt_compressor(discovered):
        choices.append(FolderChoice(f"bundled SmolLM2-135M (EHPC heads, {discovered})", discovered, True))
    else:
        choices.append(FolderChoice("bundled SmolLM2-135M (no EHPC heads yet: discover them below)", None, False))
    return choices, problems


def model_folder(choice: FolderChoice) -> Path:
    """The folder a compressor loads from: the choice's, or the bundled model (materialised on first use)."""
    if choice.path is not None:
        return choice.path
    from compressor.models.builtin import materialize_builtin

    return materialize_builtin(BUNDLED)


def method_problem(choice: FolderChoice, method: str) -> str | None:
    """Why METHOD cannot run on CHOICE (None when it can)."""
    if method not in METHODS:
        return f"unknown method {method!r} (known: {', '.join(METHODS)})"
    if method == "ehpc" and not choice.ehpc:
        return (f"EHPC needs the folder's evaluator heads ({PROMPT_SPEC_FILE}): run `compressor prompt discover` "
                f"on it, or pick another method")
    if method in LLMLINGUA_METHODS and importlib.util.find_spec("llmlingua") is None:
        return f"{method} needs the llmlingua package: pip install -e '.[llmlingua]'"
    return None


def spec_version(folder: Path) -> float:
    """A cache key that changes when the folder's evaluator heads are (re)discovered."""
    path = spec_path(folder)
    return path.stat().st_mtime if path.is_file() else 0.0


def load(folder: Path, method: str, device: str = "auto"):
    """The compressor of METHOD for FOLDER on DEVICE (CUDA when there is one), float32 scoring."""
    return load_compressor(Path(folder), method, "torch", device, "float32")


def discover_bundled(progress=lambda m: None, probe_tokens: int = 1024) -> Path:
    """Discover the bundled model's evaluator heads once (the recipe ehpc.yaml's settings); return the folder.
    Two sessions asking at once: the second waits for the first's result."""
    from filelock import FileLock

    from compressor.models.builtin import materialize_builtin
    from compressor.prompt.commands import discover_folder
    from compressor.prompt.stage import EvaluatorHeadsParams

    target = bundled_ehpc_folder()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not has_prompt_compressor(target):
            params = EvaluatorHeadsParams(stage="evaluator_heads", probe_tokens=probe_tokens)
            discover_folder(materialize_builtin(BUNDLED), params, out=target, force=target.exists(),
                            progress=progress)
    return target


def compress(compressor, prompt: str, question: str | None, rate: float, passages: bool = False):
    """A `Compression` of PROMPT at RATE, QUESTION appended and kept (UserError for what the user can fix)."""
    check_compress_args(prompt, rate, None)
    options = {"coarse": "passages"} if passages else {}
    return compressor.compress(prompt, rate=rate, question=(question or "").strip() or None, **options)


def load_answerer(folder: Path, device: str = "auto"):
    """(model, tokenizer) of FOLDER's whole model, for answers to the full and the compressed prompt."""
    import torch

    from compressor.models.sources import load_model, pick_device

    return load_model(resolve(folder).model, pick_device(device), torch.float32)


def answer(model, tokenizer, prompt: str, max_new_tokens: int = 48) -> tuple[str, int, float]:
    """The model's greedy answer to PROMPT (its chat template when it has one, as the server asks), its prompt
    tokens and the seconds it took."""
    import torch

    started = time.perf_counter()
    if tokenizer.chat_template:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            return_tensors="pt")
    else:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and ids.shape[1] + max_new_tokens > limit:
        raise UserError(f"prompt: {ids.shape[1]:,} tokens and {max_new_tokens} new ones exceed the model's "
                        f"{limit:,} positions")
    ids = ids.to(model.device)
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
    return text, ids.shape[1], time.perf_counter() - started
