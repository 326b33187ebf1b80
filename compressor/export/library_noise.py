"""Keep the terminal for our progress and errors while export libraries run."""

import logging
import warnings
from contextlib import contextmanager

# the torch tracer and optimum warn about every data-dependent branch of the modeling code; onnxruntime's
# quantizers log every node at INFO (one of them calls logging.basicConfig(level=INFO) when imported)
LOGGERS = ("", "optimum", "transformers", "torch.onnx", "onnxruntime", "onnxruntime.quantization.matmul_nbits_quantizer")


@contextmanager
def quiet_libraries():
    """Errors only from the libraries' loggers and no Python warnings inside the block (levels restored after).

    Import the libraries before entering: a module that configures logging at import time would undo this.
    """
    loggers = [logging.getLogger(name) for name in LOGGERS]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
