"""Keep llm-compressor's and compressed-tensors' loguru messages off stdout (they would corrupt `--json`)."""

import contextlib
import os

# llm-compressor otherwise replaces loguru's handlers with one on stdout when it is imported
os.environ.setdefault("LLM_COMPRESSOR_LOG_DISABLED", "true")

_MODULES = ("llmcompressor", "compressed_tensors")


@contextlib.contextmanager
def quiet_loguru():
    import compressed_tensors  # noqa: F401  (it enables its logger when first imported)
    from loguru import logger

    try:
        logger.level("METRIC")
    except ValueError:  # llm-compressor registers it only when its logging is on, yet GPTQ logs at it
        logger.level("METRIC", no=38)
    for name in _MODULES:
        logger.disable(name)
    try:
        yield
    finally:
        for name in _MODULES:
            logger.enable(name)
