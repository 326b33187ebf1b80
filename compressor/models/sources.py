"""Model sources: `builtin:NAME`, a local Hugging Face folder, or a hub id; device and dtype choice."""

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from compressor.core.errors import UserError
from compressor.core.progress import counting, quiet
from compressor.models.builtin import materialize_builtin

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".jinja", ".py")


@dataclass(frozen=True)
class ModelSource:
    id: str
    path: Path
    kind: str  # builtin | local | hub


def resolve_source(model_id: str, revision: str | None = None) -> ModelSource:
    if not model_id or not model_id.strip():
        raise UserError("model: an empty id (expected builtin:NAME, a model folder, or a hub id org/name)")
    if model_id.startswith("builtin:"):
        return ModelSource(model_id, materialize_builtin(model_id.split(":", 1)[1]), "builtin")
    local = Path(model_id).expanduser()
    try:
        exists = local.exists()
    except OSError as error:
        raise UserError(f"model {model_id[:120]!r}: not a usable path ({error.strerror})") from None
    if exists:
        if not (local / "config.json").is_file():
            raise UserError(f"{local}: not a Hugging Face model folder (no config.json)")
        return ModelSource(model_id, local.resolve(), "local")
    if HUB_ID.match(model_id):
        return ModelSource(model_id, _download(model_id, revision), "hub")
    raise UserError(f"model {model_id!r}: not builtin:NAME, an existing folder, or a hub id (org/name)")


def _download(model_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model_id, revision=revision,
                                      allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py"]))
    except Exception as error:  # offline, gated, missing: one line for the user
        raise UserError(f"model {model_id!r}: could not fetch from the hub ({type(error).__name__}: {error})") from None


def model_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def content_hash(folder: Path, progress=quiet) -> str:
    """sha256 over the relative names and bytes of the checkpoint's files (weights, config, tokenizer)."""
    digest = hashlib.sha256()
    files = model_files(folder)
    with counting(progress, f"hashing {folder}", sum(p.stat().st_size for p in files) / 2**20, "MB") as advance:
        for path in files:
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
                    advance(len(block) / 2**20)
    return digest.hexdigest()


def pick_device(device: str = "auto"):
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available")
    if device.startswith("cuda") and torch.device(device).index is not None \
            and torch.device(device).index >= torch.cuda.device_count():
        raise UserError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("device 'mps' requested but this machine has no MPS (Apple GPU) backend")
    return torch.device(device)


def pick_dtype(dtype: str):
    import torch

    return "auto" if dtype == "auto" else getattr(torch, dtype)


def load_config(source: ModelSource, trust_remote_code: bool = False):
    """The transformers config of a folder that passed `checkpoint.check_model_folder`."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source.path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as error:
        message = " ".join(str(error).split())[:200]
        raise UserError(f"{source.path / 'config.json'}: transformers cannot build a config from it "
                        f"({type(error).__name__}: {message})") from None


def load_model(path: Path, device, dtype="auto", trust_remote_code: bool = False):
    """Load model and tokenizer with the stock transformers loaders, in eval mode, on `device`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = dict(dtype=dtype, trust_remote_code=trust_remote_code, low_cpu_mem_usage=True)
    if device.type == "cuda":
        kwargs["device_map"] = {"": device.index or 0}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if device.type != "cuda":
        model = model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    return model.eval(), tokenizer
