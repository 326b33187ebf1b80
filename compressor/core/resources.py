"""Data that ships inside the package: the recipe gallery, evaluation suites / tasks / data, deployment targets.

The files live at the top of the source tree (recipes/, eval/, export/targets/); compressor/assets/ holds
links to them, so an editable checkout and an installed wheel (where setuptools copied the files in) find
them at the same place inside the package.
"""

from importlib.resources import files
from pathlib import Path

from compressor.core.errors import UserError


def _asset(name: str) -> Path:
    return Path(str(files("compressor") / "assets" / name))


def recipes_dir() -> Path:
    return _asset("recipes")


def eval_dir() -> Path:
    """eval/: suites/, tasks/ and data/ (task YAMLs name their data files relative to eval_dir().parent)."""
    return _asset("eval")


def targets_dir() -> Path:
    return _asset("targets")


def gallery(folder: Path) -> dict[str, Path]:
    """name -> file of every YAML in a packaged folder."""
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def named_or_path(value: str | Path, folder: Path, what: str) -> Path:
    """A path that exists, else the packaged YAML called `value` (e.g. `fp16` for recipes/fp16.yaml).

    UserError names what is packaged when neither is found (and the gallery name when a path's file name is one).
    """
    path = Path(value)
    try:
        if path.exists():
            return path
    except OSError as error:  # a name longer than the system allows
        raise UserError(f"{str(value)[:120]}...: not a usable {what} path ({error.strerror})") from None
    known = gallery(folder)
    if str(value) in known:
        return known[str(value)]
    if path.stem in known:
        raise UserError(f"{value}: no such {what} file (the packaged {what} {path.stem!r} is found by its name "
                        f"from any folder: {path.stem})")
    raise UserError(f"{value}: no such {what} file or packaged {what} (packaged: {', '.join(known) or 'none'})")
