"""Model sources: `builtin:NAME`, a local Hugging Face folder, or a hub id; device and dtype choice."""

import hashlib
import os
import re
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

from compressor.core.errors import UserError
from compressor.core.files import nearest_existing
from compressor.core.progress import counting, quiet
from compressor.core.sizes import size_in_bytes
from compressor.models.builtin import materialize_builtin

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".jinja", ".py")
CUDA_KEY = re.compile(r"^(cuda:)?(\d+)$")


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


def memory_device(key):
    """A `max_memory` key as accelerate names the device: "cpu", "mps" or a CUDA index (0, "0", "cuda:0" -> 0)."""
    if isinstance(key, int) and not isinstance(key, bool) and key >= 0:
        return key
    if key in ("cpu", "mps"):
        return key
    match = CUDA_KEY.match(key) if isinstance(key, str) else None
    if match is None:
        raise ValueError("not a device (expected cpu, mps, a CUDA index 0, 1, .. or cuda:N)")
    return int(match.group(2))


def memory_entry(entry) -> int:
    """One `max_memory` entry, paired with its key by the recipe (so an error names the entry): its bytes."""
    key, size = entry
    memory_device(key)
    return size_in_bytes(size)


def check_offload_folder(folder: Path) -> None:
    """The folder (or, if it does not exist yet, the nearest existing one above it) is a writable folder."""
    try:
        existing = nearest_existing(Path(folder).expanduser())
        if not existing.is_dir():
            raise ValueError(f"{existing} exists and is not a folder")
    except OSError as error:
        raise ValueError(f"not a usable path ({error.strerror})") from None
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{existing} is not writable")


def check_memory_devices(max_memory: dict | None, where: str = "model.max_memory") -> None:
    """Every device `max_memory` names exists on this machine (known only here, not where the recipe was written)."""
    if not max_memory:
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for key in max_memory:
        if isinstance(key, int) and key >= count:
            raise UserError(f"{where}.{key}: no CUDA device {key} (this machine has {count})")
        if key == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserError(f"{where}.mps: this machine has no MPS (Apple GPU) backend")


def load_model(path: Path, device, dtype="auto", trust_remote_code: bool = False, device_map: str | None = None,
               max_memory: dict | None = None, offload_folder: Path | None = None):
    """Load model and tokenizer with the stock transformers loaders, in eval mode, on `device`.

    With `device_map` (auto / sequential), accelerate places what fits `max_memory` and offloads the rest, to the
    CPU and then to disk in a fresh folder inside `offload_folder` (default: the system's temporary folder),
    removed when the model is freed or the process ends.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from compressor.models.offload import is_offloaded, own_cpu_tensors

    kwargs = dict(dtype=dtype, trust_remote_code=trust_remote_code, low_cpu_mem_usage=True)
    folder = None
    if device_map is not None:
        if offload_folder is not None:
            Path(offload_folder).mkdir(parents=True, exist_ok=True)
        folder = tempfile.mkdtemp(prefix="compressor-offload-", dir=offload_folder)
        kwargs.update(device_map=device_map, max_memory=max_memory, offload_folder=folder, offload_state_dict=True)
    elif device.type == "cuda":
        kwargs["device_map"] = {"": device.index or 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except BaseException as error:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
            if "device disk is invalid" in str(error):  # transformers, when nothing fits anywhere but on disk
                raise UserError(f"model.max_memory {max_memory}: nothing fits in it, not even the first layer; "
                                "allow more memory") from None
        raise
    if folder is not None:
        weakref.finalize(model, shutil.rmtree, folder, ignore_errors=True)
        if is_offloaded(model):
            own_cpu_tensors(model)
    elif device.type != "cuda":
        model = model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    return model.eval(), tokenizer


def load_teacher(path: Path, device, dtype="auto", trust_remote_code: bool = False, **offload):
    """The source loaded again, frozen (eval mode, no gradients): the heal stage's teacher when the student is
    placed by `device_map` (a deep copy of an offloaded model would onload it whole); `offload` as load_model's."""
    model, _ = load_model(path, device, dtype, trust_remote_code, **offload)
    return model.requires_grad_(False)


def offload_options(spec) -> dict:
    """load_model's offload arguments from a recipe's `model:` (empty without device_map)."""
    if spec.device_map is None:
        return {}
    return {"device_map": spec.device_map, "max_memory": spec.max_memory, "offload_folder": spec.offload_folder}


def config_only(model_id: str, revision: str | None = None, trust_remote_code: bool = False):
    """(config, folder or None) without the weights: a hub id fetches config.json alone (for plans of models
    this machine does not hold)."""
    if not model_id.startswith("builtin:") and not Path(model_id).expanduser().exists() and HUB_ID.match(model_id):
        from huggingface_hub import hf_hub_download

        try:
            folder = Path(hf_hub_download(model_id, "config.json", revision=revision)).parent
        except Exception as error:  # offline, gated, missing: one line for the user
            raise UserError(f"model {model_id!r}: could not fetch its config.json ({type(error).__name__}: "
                            f"{' '.join(str(error).split())[:200]})") from None
        return load_config(ModelSource(model_id, folder, "hub"), trust_remote_code), None
    source = resolve_source(model_id, revision)
    if not (source.path / "config.json").is_file():
        raise UserError(f"{source.path}: not a Hugging Face model folder (no config.json)")
    return load_config(source, trust_remote_code), source.path
