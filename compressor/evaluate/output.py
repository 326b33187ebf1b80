"""`compressor eval DIR`: judge an output folder (or a bare model folder) against the source it was made from."""

import json
from pathlib import Path

from compressor.core.errors import UserError
from compressor.core.files import folder_size_mb
from compressor.core.layout import REPORT_JSON, read_provenance, resolve
from compressor.evaluate.judge import judge
from compressor.evaluate.spec import EvalSpec, check_folders
from compressor.models.checkpoint import check_model_folder
from compressor.models.sources import content_hash, pick_device, resolve_source


def recorded_source(output: Path | None) -> str | None:
    """The source an output was made from, as its report.json (beside model/, never shipped) records it:
    the local path for a folder (model/compressor.json names it by its folder only), else the id."""
    if output is None or not (Path(output) / REPORT_JSON).is_file():
        return None
    try:
        source = json.loads((Path(output) / REPORT_JSON).read_text(encoding="utf-8")).get("source") or {}
    except (ValueError, AttributeError):
        return None
    if source.get("kind") == "local" and source.get("path"):
        return source["path"]
    return source.get("id")


def evaluate_output(output_dir: Path, spec: EvalSpec, baseline: str | None = None, device: str = "auto",
                    fresh_baseline: bool = False, progress=lambda message: None,
                    samples_dir: Path | None = None) -> dict:
    resolved = resolve(output_dir)
    folder = resolved.model
    check_model_folder(folder)
    provenance = read_provenance(folder) or {}
    source = None
    if spec.baseline:
        baseline = baseline or recorded_source(resolved.output) or provenance.get("source", {}).get("id")
        if not baseline:
            raise UserError(f"{folder}: no compressor.json naming the source; pass --baseline MODEL or --no-baseline")
        source = resolve_source(baseline)
        check_model_folder(source.path)
    check_folders(spec, [folder] + ([source.path] if source else []))
    result = judge(folder, source.path if source else None, spec, pick_device(device), progress, fresh_baseline,
                   samples_dir=samples_dir)
    report = {"recipe": provenance.get("recipe", folder.parent.name), "output": str(output_dir),
              "model": {"size_mb": round(folder_size_mb(folder), 2)}, "eval": result,
              "source": {"id": baseline, "sha256": "", "size_mb": None}}
    if source:
        report["source"] = {"id": source.id, "sha256": content_hash(source.path),
                            "size_mb": round(folder_size_mb(source.path), 2)}
    return report
