"""Where compressor keeps its caches."""

import os
from pathlib import Path


def compressor_home() -> Path:
    """$COMPRESSOR_HOME, default ~/.cache/compressor (materialised builtin models, baseline cache)."""
    return Path(os.environ.get("COMPRESSOR_HOME", Path.home() / ".cache" / "compressor")).expanduser()
