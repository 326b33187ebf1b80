"""`compressor eval DIR`: judge an output folder against the source it was made from."""

from pathlib import Path

from compressor.errors import UserError
from compressor.export.writer import folder_size_mb, read_provenance
from compressor.models.sources import content_hash, pick_device, resolve_source
from compressor.recipe import EvalSpec


def model_folder(output_dir: Path) -> Path:
    output_dir = Path(output_dir)
    for candidate in (output_dir / "model", output_dir):
        if (candidate / "config.json").is_file():
            return candidate
    raise UserError(f"{output_dir}: no model/config.json (expected an output folder of `compressor apply`)")


def evaluate_output(output_dir: Path, spec: EvalSpec, baseline: str | None = None, device: str = "auto",
                    fresh_baseline: bool = False, progress=lambda message: None) -> dict:
    from compressor.evaluate.judge import judge

    folder = model_folder(output_dir)
    provenance = read_provenance(folder) or {}
    source = None
    if spec.baseline:
        baseline = baseline or provenance.get("source", {}).get("id")
        if not baseline:
            raise UserError(f"{folder}: no compressor.json naming the source; pass --baseline MODEL or --no-baseline")
        source = resolve_source(baseline)
    result = judge(folder, source.path if source else None, spec, pick_device(device), progress, fresh_baseline)
    report = {"recipe": provenance.get("recipe", folder.parent.name), "output": str(output_dir),
              "model": {"size_mb": round(folder_size_mb(folder), 2)}, "eval": result,
              "source": {"id": baseline, "sha256": "", "size_mb": None}}
    if source:
        report["source"] = {"id": source.id, "sha256": content_hash(source.path),
                            "size_mb": round(folder_size_mb(source.path), 2)}
    return report
