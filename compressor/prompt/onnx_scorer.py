"""EHPC (arXiv 2501.12959) token scores from the exported scorer.onnx in plain onnxruntime; selection unchanged.

`compressor export onnx OUT` writes OUT/onnx/scorer.onnx (layers 0..L* and the evaluator heads, see
compressor/export/scorer_onnx.py) with prompt_compressor.json and the tokenizer beside it, so that folder alone
compresses prompts: no torch model, no transformers modeling code, no safetensors.

    pc = OnnxPromptCompressor.from_pretrained("out/ehpc")      # out/ehpc/onnx/scorer.onnx, or the onnx folder
    short = pc.compress(document, rate=0.25, question="What is the pass key?")
"""

from __future__ import annotations

from pathlib import Path

import torch

from compressor.core.errors import UserError
from compressor.core.layout import ONNX_DIR, SCORER_FILE
from compressor.prompt.compressor import PromptCompressor
from compressor.prompt.spec import read_spec
from compressor.runtimes.onnx_decoder import open_session


class OnnxScorer:
    """input_ids [1, n] (torch) -> scores [n] (float32 torch), computed by an onnxruntime session."""

    def __init__(self, path: Path, threads: int | None = None):
        self.path = Path(path)
        self.session = open_session(self.path, threads=threads)
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != ["input_ids"] or outputs != ["scores"]:
            raise UserError(f"{self.path}: not an EHPC scorer graph (inputs {inputs}, outputs {outputs}; "
                            f"expected input_ids -> scores)")

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        ids = torch.as_tensor(input_ids).reshape(1, -1).to(torch.int64).numpy()
        (scores,) = self.session.run(["scores"], {"input_ids": ids})
        return torch.from_numpy(scores)


def scorer_folder(folder: Path) -> Path:
    """The folder holding scorer.onnx: FOLDER/onnx (an output of `apply`) or FOLDER itself."""
    folder = Path(folder)
    for candidate in (folder / ONNX_DIR, folder):
        if (candidate / SCORER_FILE).is_file():
            return candidate
    if not folder.exists():
        raise UserError(f"{folder}: no such folder")
    raise UserError(f"{folder}: no {SCORER_FILE} (run `compressor export onnx {folder}` on an output with "
                    f"prompt_compressor.json first)")


class OnnxPromptCompressor(PromptCompressor):
    """EHPC with the scorer in onnxruntime: same spec, tokenizer and selection as `PromptCompressor`."""

    @classmethod
    def from_pretrained(cls, folder, threads: int | None = None) -> "OnnxPromptCompressor":
        """FOLDER: an output folder with onnx/scorer.onnx, or the ONNX folder itself."""
        from transformers import AutoTokenizer

        onnx_dir = scorer_folder(folder)
        spec = read_spec(onnx_dir)
        tokenizer = AutoTokenizer.from_pretrained(onnx_dir)
        compressor = cls(tokenizer, OnnxScorer(onnx_dir / SCORER_FILE, threads), spec)
        length = getattr(tokenizer, "model_max_length", None)
        compressor.max_tokens = length if isinstance(length, int) and length < 10**8 else None
        return compressor

    def token_scores(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.scorer(input_ids)
