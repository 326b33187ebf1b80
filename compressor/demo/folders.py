"""The folders the app shows: those given to `compressor demo` (passed to the Streamlit script in
$COMPRESSOR_DEMO_FOLDERS, os.pathsep-separated), else the outputs and sweeps found under ./out."""

import os
from pathlib import Path

from compressor.core.layout import is_output
from compressor.prompt.spec import spec_path
from compressor.reports.sweep import SWEEP_JSON

FOLDERS_ENV = "COMPRESSOR_DEMO_FOLDERS"


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


def is_sweep(folder: Path) -> bool:
    return (Path(folder) / SWEEP_JSON).is_file()


def has_prompt_compressor(folder: Path) -> bool:
    """An output (or model folder) carrying EHPC's prompt_compressor.json."""
    return spec_path(folder).is_file()
