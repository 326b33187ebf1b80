"""EHPC prompt pre-compressor (Fei et al., arXiv 2501.12959): evaluator-head discovery and token scoring.

`from compressor.prompt import PromptCompressor` (imported lazily: the stage registry imports this
package without loading transformers).
"""


def __getattr__(name):
    if name in ("PromptCompressor", "Compression"):
        from compressor.prompt import compressor

        return getattr(compressor, name)
    raise AttributeError(name)


__all__ = ["PromptCompressor", "Compression"]
