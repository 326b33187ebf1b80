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

import json
import tempfile
from pathlib import Path

import yaml

from compressor.core.errors import UserError
from compressor.data.corpus import load_corpus
from compressor.evaluate.lm_eval_runner import evaluate_tasks

TASK_NAME = "compressor_corpus_perplexity"
METRICS = ("word_perplexity", "byte_perplexity", "bits_per_byte")


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




def perplexity(model, tokenizer, docs: list[str] | None = None, split: str = "eval", limit: int | None = None,
               batch_size: int = 8, max_length: int | None = None) -> dict:
    """Word/byte perplexity and bits per byte of `model` on `docs` (default: the corpus `split`).

    `max_length` is the rolling window length (default: the model config's max_position_embeddings).
    The model and tokenizer are left as they were (see `lm_eval_runner.evaluate_tasks`).
    """
    if docs is None:
        docs = load_corpus(split, limit)
    elif limit is not None:
        docs = docs[:limit]
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise UserError("perplexity: no non-empty documents to score")
    if batch_size < 1:
        raise UserError(f"perplexity: batch_size must be >= 1, got {batch_size}")
    with tempfile.TemporaryDirectory(prefix="compressor-ppl-") as tmp:
        _write_task(Path(tmp), docs)
        results = evaluate_tasks(model, tokenizer, Path(tmp), [TASK_NAME], batch_size, max_length)
    row = results[TASK_NAME]
    out = {name: float(row[f"{name},none"]) for name in METRICS}
    out["docs"] = len(docs)
    return out
