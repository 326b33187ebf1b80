"""Perplexity of an in-memory causal LM on corpus text, computed by lm-eval's `loglikelihood_rolling`.

The task is generated at run time (a YAML file in a temporary folder pointing at a temporary JSONL of
the documents), so nothing depends on lm-eval's bundled tasks or on the network. Each document is
scored on its own: its text tokens (no BOS added to the text) conditioned on the tokenizer's BOS (or
EOS) as prefix, in disjoint windows of `max_length` tokens when it is longer than that.

Metrics (lm-eval's definitions, summed over all documents before dividing):
  word_perplexity = exp(-sum(loglik) / words), words = whitespace-separated words
  byte_perplexity = exp(-sum(loglik) / utf8_bytes)
  bits_per_byte   = -sum(loglik) / utf8_bytes / ln 2  (= log2(byte_perplexity))
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import tempfile
from pathlib import Path

import torch
import yaml

from compressor.errors import UserError

TASK_NAME = "compressor_corpus_perplexity"
METRICS = ("word_perplexity", "byte_perplexity", "bits_per_byte")
_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "HF_UPDATE_DOWNLOAD_COUNTS": "0"}
_NOISY_LOGGERS = ("lm_eval", "datasets", "filelock", "fsspec")
# Warnings lm-eval always logs when handed a model object, which is what we mean to do.
_EXPECTED_WARNINGS = ("`pretrained` model kwarg is not of type `str`", "Passed an already-initialized model")


class _DropExpected(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_EXPECTED_WARNINGS)


@contextlib.contextmanager
def _offline_and_quiet():
    """Hub/datasets offline (env vars and the flags of the imported modules), lm-eval and datasets
    logging at WARNING or above, datasets progress bars off; everything restored afterwards."""
    # Import first: these modules read their flags and set up logging at import time.
    import datasets.config as dconfig
    import datasets.utils.logging as dlogging
    import huggingface_hub.constants as hconstants
    import lm_eval  # noqa: F401

    saved_env = {key: os.environ.get(key) for key in _OFFLINE_ENV}
    flags = [(dconfig, "HF_HUB_OFFLINE", True), (dconfig, "HF_DATASETS_OFFLINE", True),
             (dconfig, "HF_UPDATE_DOWNLOAD_COUNTS", False), (hconstants, "HF_HUB_OFFLINE", True)]
    saved_flags = [(module, attr, getattr(module, attr)) for module, attr, _ in flags if hasattr(module, attr)]
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    saved_levels = [logger.level for logger in loggers]
    hf_logger, drop = logging.getLogger("lm_eval.models.huggingface"), _DropExpected()
    progress_was = dlogging.is_progress_bar_enabled()

    os.environ.update(_OFFLINE_ENV)
    for module, attr, value in flags:
        if hasattr(module, attr):
            setattr(module, attr, value)
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    hf_logger.addFilter(drop)
    dlogging.disable_progress_bar()
    try:
        yield
    finally:
        if progress_was:
            dlogging.enable_progress_bar()
        hf_logger.removeFilter(drop)
        for logger, level in zip(loggers, saved_levels):
            logger.setLevel(level)
        for module, attr, value in saved_flags:
            setattr(module, attr, value)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _write_task(folder: Path, docs: list[str]) -> None:
    data = folder / "docs.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for text in docs:
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    task = {
        "task": TASK_NAME,
        "dataset_path": "json",
        "dataset_name": None,
        # A private datasets cache: no stale Arrow cache from an earlier run with other documents.
        "dataset_kwargs": {"data_files": {"test": str(data.resolve())},
                           "cache_dir": str((folder / "hf_datasets").resolve())},
        "test_split": "test",
        "output_type": "loglikelihood_rolling",
        "doc_to_text": "",
        "doc_to_target": "{{text}}",
        "should_decontaminate": False,
        "metric_list": [{"metric": name, "aggregation": "bits_per_byte" if name == "bits_per_byte"
                         else "weighted_perplexity", "higher_is_better": False} for name in METRICS],
        "metadata": {"version": 1.0},
    }
    (folder / f"{TASK_NAME}.yaml").write_text(yaml.safe_dump(task, sort_keys=False), encoding="utf-8")


def _model_state(model) -> tuple:
    first = next(model.parameters(), None)
    return (first.device, first.dtype) if first is not None else (None, None), model.training


def perplexity(model, tokenizer, docs: list[str] | None = None, split: str = "eval", limit: int | None = None,
               batch_size: int = 8, max_length: int | None = None) -> dict:
    """Word/byte perplexity and bits per byte of `model` on `docs` (default: the corpus `split`).

    `model` is a loaded `transformers` causal LM; it stays on its device and dtype and keeps its
    lm_head (lm-eval's `.tie_weights()` call is suppressed; its `.eval()` is undone afterwards if the
    model was in training mode). `tokenizer` is not modified (lm-eval gets a copy, since it may set a
    pad token). `max_length` is the rolling window length
    (default: the model config's max_position_embeddings). Log-softmax runs in float32 so float16 and
    bfloat16 models are scored without half-precision sums.
    """
    if docs is None:
        from compressor.evaluate.corpus import load_corpus

        docs = load_corpus(split, limit)
    elif limit is not None:
        docs = docs[:limit]
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise UserError("perplexity: no non-empty documents to score")
    if batch_size < 1:
        raise UserError(f"perplexity: batch_size must be >= 1, got {batch_size}")

    (device, dtype), was_training = _model_state(model)
    with _offline_and_quiet(), tempfile.TemporaryDirectory(prefix="compressor-ppl-") as tmp:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager

        folder = Path(tmp)
        _write_task(folder, docs)
        # HFLM.__init__ calls model.tie_weights(): with tie_word_embeddings=True in the config that
        # would re-tie an lm_head an edit deliberately replaced, so it is a no-op while HFLM is built.
        model.tie_weights = lambda *args, **kwargs: None
        try:
            lm = HFLM(pretrained=model, tokenizer=copy.deepcopy(tokenizer), batch_size=batch_size,
                      max_length=max_length, add_bos_token=False, softmax_dtype=torch.float32)
        finally:
            del model.tie_weights
        try:
            results = lm_eval.simple_evaluate(
                model=lm,
                tasks=[TASK_NAME],
                task_manager=TaskManager(include_path=str(folder), include_defaults=False),
                bootstrap_iters=0,  # no stderr resampling
                log_samples=False,
                # no reseeding of the global python/numpy/torch generators
                random_seed=None, numpy_random_seed=None, torch_random_seed=None, fewshot_random_seed=None,
            )
        finally:
            model.train(was_training)
    if _model_state(model)[0] != (device, dtype):  # lm-eval must not move or cast the caller's model
        raise RuntimeError(f"lm-eval changed the model from {device}/{dtype} to {_model_state(model)[0]}")

    row = results["results"][TASK_NAME]
    out = {name: float(row[f"{name},none"]) for name in METRICS}
    out["docs"] = len(docs)
    return out
