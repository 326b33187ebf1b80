"""`compressor package`: stage OUT/model, rewrite its config for a target, check it (rules, then the target's
runtime checks), zip it to OUT/submit.zip."""

import fnmatch
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from compressor.core.atomic import atomic_file, output_lock, refuse_existing, remove_abandoned
from compressor.core.errors import CheckFailed, UserError
from compressor.core.layout import CONFIG_FILE, MODEL_DIR, ZIP_NAME, resolve
from compressor.export.check import check_output
from compressor.export.targets import Target, advisories, check_model_dir, quantization_rewrites, rewrite_config
# Weights barely deflate (bf16: ~26% at 46 MB/s with level 1, vs ~850 MB/s stored) and a 1.2B model is far
# below the 10 GB limit in any dtype: store them, deflate the small text files.
STORED_SUFFIXES = (".safetensors",)


def _source_files(source: Path, allowed: list[str]) -> tuple[list[Path], list[str]]:
    """(files to ship, what was skipped and why): regular files directly in `source` whose names match the
    target's allow-list; never a link (it could point outside the folder), a hidden file, a sub-folder or a name
    that is not UTF-8."""
    files, skipped = [], []
    for path in sorted(source.iterdir(), key=lambda p: p.name.encode("utf-8", "surrogateescape")):
        name = path.name
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            skipped.append(f"{name.encode('utf-8', 'surrogateescape')!r} (file name is not UTF-8)")
            continue
        if path.is_symlink():
            skipped.append(f"{name} (a link: only files inside model/ are shipped)")
        elif path.is_dir():
            skipped.append(f"{name}/ (a folder)")
        elif not path.is_file():
            skipped.append(f"{name} (not a regular file)")
        elif name.startswith("."):
            skipped.append(f"{name} (hidden)")
        elif not any(fnmatch.fnmatchcase(name, pattern) for pattern in allowed):
            skipped.append(f"{name} (not a model-folder file; targets list what ships under layout.files)")
        else:
            files.append(Path(name))
    return files, skipped


def _describe(before: dict, after: dict, target: Target) -> list[str]:
    done = [f"renamed {old} -> {new}" for old, new in target.config.rename.items() if old in before]
    done += [f"set {key}: {before.get(key)!r} -> {value!r}" for key, value in target.config.set.items()
             if before.get(key) != value]
    if isinstance(before.get("quantization_config"), dict):
        done += quantization_rewrites(before, target)[1]
    return done


def _stage(source: Path, staged: Path, files: list[Path], target: Target) -> list[str]:
    """Link (or copy) the files into `staged`; write the rewritten config.json as a new file."""
    rewrites = []
    for rel in files:
        src, dst = source / rel, staged / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if rel == Path(CONFIG_FILE) and target.config.any():
            try:
                before = json.loads(src.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise UserError(f"{src}: invalid JSON ({error})") from None
            after = rewrite_config(before, target)
            rewrites = _describe(before, after, target)
            if not rewrites:  # nothing to change: ship the file byte for byte
                shutil.copy2(src, dst)
                continue
            dst.write_text(json.dumps(after, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            continue
        try:  # a hard link costs nothing for multi-GB weights; nothing ever writes to these paths
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    return rewrites


def _over(what: str, size: int, limit) -> list[str]:
    return [f"limits: {what} size {size / 1e9:.2f} GB exceeds {limit / 1e9:.2f} GB"] if limit and size > limit else []


def _quiet(message: str) -> None:
    pass


def _runtime_checks(staged: Path, source: Path, target: Target, progress) -> list[dict]:
    """`compressor check` of the staged (rewritten) folder in each of the target's runtimes; refuse on failure."""
    results = []
    for runtime in target.runtime_checks:
        progress(f"runtime check: {runtime}")
        try:  # onnxruntime checks the output's ONNX export (never zipped: the zip holds the model folder only)
            result = check_output(staged, runtime, progress=progress, onnx=resolve(source.parent).onnx_dir)
        except CheckFailed as error:
            raise CheckFailed(f"{source}: fails target {target.name}: runtime check {runtime}: "
                              f"{str(error).replace(str(staged), 'staged model')}") from None
        if not result["passed"]:
            raise CheckFailed(f"{source}: fails target {target.name}: runtime check {runtime}: "
                              + "; ".join(result["reasons"]))
        results.append({"runtime": runtime, "passed": True, **result["summary"],
                        "versions": result["runtime_info"]["versions"], "seconds": result["seconds"]["total"]})
    return results


def package(output_dir: Path, target: Target, force: bool = False, progress=_quiet) -> dict:
    """Check a staged, rewritten copy of `output_dir/model` against `target` (rules, then runtime checks)
    and write `output_dir/submit.zip`."""
    output_dir = Path(output_dir)
    source = output_dir / MODEL_DIR
    if not source.is_dir():
        raise UserError(f"{source}: no such folder (run `compressor apply` first)")
    zip_path = output_dir / ZIP_NAME
    refuse_existing(zip_path, force)
    if zip_path.is_dir() and not zip_path.is_symlink():
        raise UserError(f"{zip_path}: a folder is in the way (remove it; submit.zip is written there)")
    with output_lock(zip_path):
        remove_abandoned(zip_path, progress)
        return _package(output_dir, source, zip_path, target, force, progress)


def _package(output_dir: Path, source: Path, zip_path: Path, target: Target, force: bool, progress) -> dict:
    files, skipped = _source_files(source, target.layout.files)
    for line in skipped:
        progress(f"not packaged: {line}")
    root = target.layout.zip_root
    with tempfile.TemporaryDirectory(prefix=f".{ZIP_NAME}.tmp-", dir=output_dir) as tmp:
        staged = Path(tmp) / root
        staged.mkdir()
        rewrites = _stage(source, staged, files, target)
        unzipped = sum((staged / rel).stat().st_size for rel in files)
        problems = check_model_dir(staged, target) + _over("unzipped", unzipped, target.limits.unzipped_bytes)
        if problems:
            raise CheckFailed(f"{source}: fails target {target.name}: " + "; ".join(problems))
        warnings = advisories(staged, target)
        for warning in warnings:
            progress(f"warning: {warning}")
        checked = _runtime_checks(staged, source, target, progress)
        names = [f"{root}/{rel.as_posix()}" for rel in files]
        with atomic_file(zip_path, force) as partial:
            with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
                for rel, name in zip(files, names):
                    stored = rel.suffix in STORED_SUFFIXES
                    zf.write(staged / rel, name, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
            zipped = partial.stat().st_size
            over = _over("zipped", zipped, target.limits.zipped_bytes)
            if over:
                raise CheckFailed(f"{zip_path}: fails target {target.name}: {over[0]}")
    return {
        "zip": str(zip_path),
        "files": names,
        "zipped_bytes": zipped,
        "unzipped_bytes": unzipped,
        "target": target.name,
        "rewrites": rewrites,
        "runtime_checks": checked,
        "skipped": skipped,
        "warnings": warnings,
    }
