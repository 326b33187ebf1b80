"""Run lm-evaluation-harness tasks on an in-memory transformers model: offline, quiet, and without
letting lm-eval change the model it is handed (device, dtype, tied weights, training flag)."""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from pathlib import Path

import torch

from compressor.core.progress import CountingBar, quiet

_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "HF_UPDATE_DOWNLOAD_COUNTS": "0"}
_NOISY_LOGGERS = ("lm_eval", "datasets", "filelock", "fsspec")
# Warnings lm-eval always logs when handed a model object, which is what we mean to do.
_EXPECTED_WARNINGS = ("`pretrained` model kwarg is not of type `str`", "Passed an already-initialized model")


class _DropExpected(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_EXPECTED_WARNINGS)


@contextlib.contextmanager
def request_progress(progress, label: str):
    """lm-eval's own request bars (tqdm) shown as `progress` counters labelled `label`; its per-document
    request-building bars silenced."""
    import lm_eval.api.model as api_model
    import lm_eval.api.task as api_task
    import lm_eval.models.huggingface as huggingface

    def bar(*args, **kwargs):
        return CountingBar(progress, label, *args, **kwargs)

    def silent(*args, **kwargs):
        return CountingBar(progress, label, *args, **{**kwargs, "disable": True})

    saved = [(module, module.tqdm) for module in (huggingface, api_model, api_task)]
    huggingface.tqdm, api_model.tqdm, api_task.tqdm = bar, bar, silent
    try:
        yield
    finally:
        for module, original in saved:
            module.tqdm = original


@contextlib.contextmanager
def offline_and_quiet():
    """Hub/datasets offline (env vars and the flags of the imported modules), lm-eval and datasets
    logging at WARNING or above, datasets progress bars off; everything restored afterwards."""
    # Import first: these modules read their flags and set up logging at import time.
    import datasets.config as dconfig
    import datasets.utils.logging as dlogging
    import huggingface_hub.constants as hconstants
    import lm_eval  # noqa: F401
    import lm_eval.evaluator as evaluator

    saved_env = {key: os.environ.get(key) for key in _OFFLINE_ENV}
    flags = [(dconfig, "HF_HUB_OFFLINE", True), (dconfig, "HF_DATASETS_OFFLINE", True),
             (dconfig, "HF_UPDATE_DOWNLOAD_COUNTS", False), (hconstants, "HF_HUB_OFFLINE", True)]
    saved_flags = [(module, attr, getattr(module, attr)) for module, attr, _ in flags if hasattr(module, attr)]
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    saved_levels = [logger.level for logger in loggers]
    hf_logger, drop = logging.getLogger("lm_eval.models.huggingface"), _DropExpected()
    progress_was = dlogging.is_progress_bar_enabled()
    # lm-eval runs `git describe` in the working directory for its results; outside a checkout git prints
    # "fatal: not a git repository" to the terminal
    git_hash = evaluator.get_git_commit_hash
    evaluator.get_git_commit_hash = lambda: None

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
        evaluator.get_git_commit_hash = git_hash
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



def _model_state(model) -> tuple:
    first = next(model.parameters(), None)
    return (first.device, first.dtype) if first is not None else (None, None), model.training




def evaluate_tasks(model, tokenizer, include_path: Path, tasks: list[str], batch_size: int = 8,
                   max_length: int | None = None, limit: int | None = None, lm_class=None) -> dict:
    """lm-eval's `simple_evaluate` on `tasks` found in `include_path`; returns its `results` dict."""
    return run_tasks(model, tokenizer, include_path, tasks, batch_size, max_length, limit, lm_class)["results"]


def run_tasks(model, tokenizer, include_path: Path, tasks: list[str], batch_size: int = 8,
              max_length: int | None = None, limit: int | None = None, lm_class=None,
              apply_chat_template: bool = False, log_samples: bool = False, timer=None, progress=quiet,
              label: str = "requests") -> dict:
    """lm-eval's `simple_evaluate` on `tasks` found in `include_path`: {"results", "samples" (when logged)}.

    `apply_chat_template`: prompts go through the tokenizer's chat template (lm-eval's own option); `timer`
    (a workload.WorkloadTimer) times every batched generate call.

    The model stays on its device and dtype and keeps its lm_head (lm-eval's `.tie_weights()` call is
    suppressed); its `.eval()` is undone afterwards if the model was in training mode. The tokenizer
    is not modified (lm-eval gets a copy, since it may set a pad token). Log-softmax runs in float32 so
    float16 and bfloat16 models are scored without half-precision sums. `lm_class` replaces HFLM (a
    subclass or factory taking HFLM's arguments, e.g. generation through a KV press).
    """
    (device, dtype), was_training = _model_state(model)
    with offline_and_quiet():
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager

        # HFLM.__init__ calls model.tie_weights(): with tie_word_embeddings=True in the config that
        # would re-tie an lm_head an edit deliberately replaced, so it is a no-op while HFLM is built.
        model.tie_weights = lambda *args, **kwargs: None
        try:
            lm = (lm_class or HFLM)(pretrained=model, tokenizer=copy.deepcopy(tokenizer), batch_size=batch_size,
                      max_length=max_length, add_bos_token=False, softmax_dtype=torch.float32)
        finally:
            del model.tie_weights
        if timer is not None:
            timer.wrap_hflm(lm)
        try:
            with request_progress(progress, label):
                results = lm_eval.simple_evaluate(
                    model=lm,
                    tasks=list(tasks),
                    task_manager=TaskManager(include_path=str(include_path), include_defaults=False),
                    limit=limit,
                    bootstrap_iters=0,  # no stderr resampling
                    log_samples=log_samples,
                    apply_chat_template=apply_chat_template,
                    # no reseeding of the global python/numpy/torch generators
                    random_seed=None, numpy_random_seed=None, torch_random_seed=None, fewshot_random_seed=None,
                )
        finally:
            model.train(was_training)
    if _model_state(model)[0] != (device, dtype):  # lm-eval must not move or cast the caller's model
        raise RuntimeError(f"lm-eval changed the model from {device}/{dtype} to {_model_state(model)[0]}")
    return {"results": results["results"], "samples": results.get("samples") or {}}
