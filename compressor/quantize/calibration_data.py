"""Calibration token windows for quantization: the local corpus (default) or an evaluation suite's documents.

Documents are packed (shuffled with the seed, joined, cut into windows of `seq_len` tokens): most corpus
documents are shorter than 512 tokens. A suite's documents are rendered the way lm-eval scores them
(context, target delimiter, target: the grammatical sentence of a minimal pair, a retrieval prompt with
its answer, a perplexity document). Calibrating on the documents a model is then scored on flatters that
score; the corpus `calibration` split is the honest default.
"""

import torch
from pydantic import Field, model_validator

from compressor.data.calibration import CalibrationSpec, calibration_texts, packed_windows
from compressor.evaluate.suite import include_folder, load_suite


class QuantCalibration(CalibrationSpec):
    samples: int = Field(64, gt=0, description="windows of seq_len tokens")
    seq_len: int = Field(512, gt=1)
    suite: str | None = Field(None, description="take the documents of this eval suite instead of a corpus split")

    @model_validator(mode="after")
    def _one_source(self):
        if self.suite is not None and {"split", "corpus"} & self.model_fields_set:
            raise ValueError("give either `split` / `corpus` (a local corpus) or `suite` (its documents), not both")
        return self

    def describe(self) -> str:
        source = f"suite {self.suite}" if self.suite else f"corpus {self.corpus} split {self.split}"
        source += " through the chat template" if self.chat_template else ""
        return f"{self.samples} x {self.seq_len} tokens from {source}, seed {self.seed}"


def suite_documents(suite_name: str) -> list[str]:
    """Every document of the suite's tasks as lm-eval renders it (context + delimiter + target)."""
    from lm_eval.tasks import TaskManager

    from compressor.evaluate.lm_eval_runner import offline_and_quiet  # lm-eval: only for a suite's documents

    suite = load_suite(suite_name)
    texts = []
    with offline_and_quiet(), include_folder(suite) as folder:
        manager = TaskManager(include_path=str(folder), include_defaults=suite.include_defaults)
        tasks = manager.load([t.task for t in suite.tasks])["tasks"]
        for task in tasks.values():
            for doc in task.eval_docs:
                texts.append(_render(task, doc))
    return [t for t in texts if t.strip()]


def _render(task, doc) -> str:
    context, target = task.doc_to_text(doc), task.doc_to_target(doc)
    if task.OUTPUT_TYPE == "multiple_choice":
        choices = task.doc_to_choice(doc)
        target = choices[target] if isinstance(target, int) else target
    if isinstance(target, list):
        target = target[0]
    if not context:
        return str(target)
    return f"{context}{task.config.target_delimiter}{target}"


def quant_calibration_windows(tokenizer, spec: QuantCalibration) -> list[torch.Tensor]:
    texts = calibration_texts(tokenizer, spec, suite_documents(spec.suite) if spec.suite else None)
    return packed_windows(tokenizer, texts, spec.samples, spec.seq_len, spec.seed)
