"""An output folder of `compressor apply`, file by file, and the one answer to "output or bare model folder?".

    OUT/
      model/                 the Hugging Face folder (config.json, weights, tokenizer, compressor.json,
                             prompt_compressor.json when EHPC heads were discovered)
      recipe.yaml            the recipe as validated
      report.json report.md report.png long_context-*.png
      check.json             `check`: the latest verdict per runtime (beside the model, so never packaged)
      prompt_heads.png       EHPC head scores
      importance.json importance.png
      onnx/                  `export onnx`: model.onnx, model_int8.onnx, scorer.onnx, compressor.json
      submit.zip             `package`
"""

import json
from dataclasses import dataclass
from pathlib import Path

from compressor.core.errors import UserError

MODEL_DIR = "model"
CONFIG_FILE = "config.json"
PROVENANCE_FILE = "compressor.json"          # in model/ (and in onnx/: the export's record)
PROMPT_SPEC_FILE = "prompt_compressor.json"  # in model/
HEATMAP_FILE = "prompt_heads.png"
RECIPE_FILE = "recipe.yaml"
REPORT_JSON, REPORT_MD, REPORT_PNG = "report.json", "report.md", "report.png"
CHECK_JSON = "check.json"
IMPORTANCE_JSON, IMPORTANCE_PNG = "importance.json", "importance.png"
ONNX_DIR = "onnx"
ONNX_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
SCORER_FILE = "scorer.onnx"
ONNX_RECORD_FILE = PROVENANCE_FILE
ZIP_NAME = "submit.zip"


@dataclass(frozen=True)
class Folder:
    """What a path given on the command line is: `model` is always the Hugging Face folder; `output` is the
    output folder it belongs to, or None for a bare model folder (which no command ever writes into)."""

    path: Path
    model: Path
    output: Path | None

    @property
    def is_output(self) -> bool:
        return self.output is not None

    @property
    def onnx_dir(self) -> Path:
        return (self.output or self.path) / ONNX_DIR


def resolve(folder: Path | str) -> Folder:
    """`Folder` for an output of `apply` (FOLDER/model/config.json) or a model folder (FOLDER/config.json)."""
    folder = Path(folder)
    if (folder / MODEL_DIR / CONFIG_FILE).is_file():
        return Folder(folder, folder / MODEL_DIR, folder)
    if (folder / CONFIG_FILE).is_file():
        return Folder(folder, folder, None)
    if not folder.exists():
        raise UserError(f"{folder}: no such folder")
    raise UserError(f"{folder}: neither an output folder (model/config.json) nor a model folder (config.json)")


def is_output(folder: Path | str) -> bool:
    return (Path(folder) / MODEL_DIR / CONFIG_FILE).is_file()


def read_provenance(model_dir: Path) -> dict | None:
    """model/compressor.json (what made the folder), or None when the folder was not written by `apply`."""
    path = Path(model_dir) / PROVENANCE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def onnx_files(folder: Path, name: str) -> list[Path]:
    """The .onnx file `name` in `folder` and its external data files, if any (`name`_data, `name`.data...)."""
    return sorted(p for p in Path(folder).iterdir() if p.name == name or p.name.startswith(name + "_data")
                  or p.name.startswith(name + ".data"))
