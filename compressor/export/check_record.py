"""OUT/check.json: the latest `compressor check` verdict of an output folder, one entry per runtime.

It lives beside report.json, not in model/, so `compressor package` (which zips model/) never ships it.
"""

import json
from datetime import datetime, timezone
from pathlib import Path

from compressor.core.atomic import atomic_file
from compressor.core.layout import CHECK_JSON


def check_entry(result: dict) -> dict:
    """What check.json keeps of a `check_output` result (or of a failure that has only runtime and reasons)."""
    summary = result.get("summary") or {}
    return {"passed": bool(result["passed"]), "reasons": list(result.get("reasons") or []),
            "prefix_agreement": summary.get("prefix_agreement"), "agreement": summary.get("agreement"),
            "min_agreement": result.get("min_agreement"), "artifact": result.get("artifact", result.get("model")),
            "versions": result.get("versions") or {},
            "checked_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def read_checks(output_dir: Path) -> dict[str, dict]:
    """runtime -> the latest verdict; {} when there is no check.json or it cannot be read (never raises)."""
    try:
        checks = json.loads((Path(output_dir) / CHECK_JSON).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    if not isinstance(checks, dict):
        return {}
    return {runtime: entry for runtime, entry in checks.items() if isinstance(entry, dict)}


def record_check(output_dir: Path, result: dict) -> dict[str, dict]:
    """Keep RESULT's verdict under its runtime in OUTPUT_DIR/check.json, the other runtimes' as they are."""
    checks = {**read_checks(output_dir), result["runtime"]: check_entry(result)}
    with atomic_file(Path(output_dir) / CHECK_JSON, force=True) as staging:
        staging.write_text(json.dumps(checks, indent=2) + "\n", encoding="utf-8")
    return checks
