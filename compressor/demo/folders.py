"""The folders the app shows: those given to `compressor demo` (passed to the Streamlit script in
$COMPRESSOR_DEMO_FOLDERS, os.pathsep-separated), else the outputs and sweeps found under ./out."""

import os
from pathlib import Path

from compressor.core.layout import CONFIG_FILE, MODEL_DIR, PROMPT_SPEC_FILE

FOLDERS_ENV = "COMPRESSOR_DEMO_FOLDERS"
SWEEP_FILE = "sweep.json"


def given_folders() -> list[Path]:
    """The folders `compressor demo` was started with, or what ./out holds (outputs and sweep folders)."""
    value = os.environ.get(FOLDERS_ENV)
    if value:
        return [Path(p) for p in value.split(os.pathsep) if p]
    return found_under(Path("out"))


def found_under(root: Path) -> list[Path]:
    """Outputs (model/config.json) and sweeps (sweep.json) directly inside ROOT, by name."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (is_output(p) or is_sweep(p)))


def is_output(folder: Path) -> bool:
    return (Path(folder) / MODEL_DIR / CONFIG_FILE).is_file()


def is_sweep(folder: Path) -> bool:
    return (Path(folder) / SWEEP_FILE).is_file()


def has_prompt_compressor(folder: Path) -> bool:
    """An output (or model folder) carrying EHPC's prompt_compressor.json."""
    folder = Path(folder)
    return (folder / MODEL_DIR / PROMPT_SPEC_FILE).is_file() or (folder / PROMPT_SPEC_FILE).is_file()
