"""The source checkout the tests run from (scripts/, recipes/, the extra venvs live at its top)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
