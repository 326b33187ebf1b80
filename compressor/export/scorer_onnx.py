"""The EHPC scorer (layers 0..L*, evaluator heads -> per-token scores) as its own ONNX graph, checked against torch.

EHPC (Fei et al., arXiv 2501.12959) scores a prompt with the first L*+1 layers only; this module exports exactly
`EvaluatorHeadScorer.forward` (compressor/prompt/scorer.py), as `load_scorer` builds it from the model folder:
input `input_ids` [1, seq] (int64, one prompt per call, seq dynamic), output `scores` [seq] (float32, the
AvgPool1d-smoothed scores). optimum-onnx's `export` traces it with the custom `ScorerOnnxConfig`; its model
patcher swaps transformers' vmap-based mask builders for traceable ones with the same semantics, so causal and
sliding-window masks stay exact at any length (a test runs past the tiny EXAONE-4's window).

Parity gate (`scorer_parity`): on a long probe prompt (the spec's needle and question in real-text filler; as long
as discovery's probes, at least 256 tokens, and past the sliding window if there is one) and a short one, the max
abs difference of the scores vs the torch scorer; on the long one, the words EHPC keeps at the spec's default rate
from either side's scores (the same selection code). The caller writes nothing when it fails.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from compressor.core.errors import CheckFailed
from compressor.core.layout import PROMPT_SPEC_FILE, SCORER_FILE, onnx_files
from compressor.export.library_noise import quiet_libraries
from compressor.prompt import selection
from compressor.prompt.compressor import PromptCompressor
from compressor.prompt.onnx_scorer import OnnxPromptCompressor, OnnxScorer
from compressor.prompt.probes import build_probes
from compressor.prompt.spec import read_spec
OPSET = 17
# fp32 ONNX vs fp32 torch: scores are sums of softmax probabilities (<= number of heads); measured ~1e-7 on the
# tiny models; a wrong mask or rotary moves them by ~1e-2 or more
DEFAULT_SCORER_ATOL = 1e-4
DEFAULT_MIN_KEPT_AGREEMENT = 0.99  # Jaccard of the kept words; 1.0 unless a near-tie flips at the budget edge
SHORT_PROBE = "Short prompt: fewer tokens than N_o and the kernel."


def _onnx_config_class():
    """optimum's OnnxConfig for the scorer graph: input_ids [1, seq] -> scores [seq] (built lazily: optimum is heavy)."""
    from optimum.exporters.onnx.base import OnnxConfig
    from optimum.utils import DummyTextInputGenerator, NormalizedTextConfig

    class ScorerOnnxConfig(OnnxConfig):
        NORMALIZED_CONFIG_CLASS = NormalizedTextConfig
        DUMMY_INPUT_GENERATOR_CLASSES = (DummyTextInputGenerator,)
        DEFAULT_ONNX_OPSET = OPSET

        @property
        def inputs(self) -> dict[str, dict[int, str]]:
            return {"input_ids": {1: "sequence_length"}}

        @property
        def outputs(self) -> dict[str, dict[int, str]]:
            return {"scores": {0: "sequence_length"}}

    return ScorerOnnxConfig


def _graph_module(scorer):
    """The scorer behind a plain forward (optimum's patcher unwraps decorated forwards as transformers models)."""
    import torch

    class ScorerGraph(torch.nn.Module):
        def __init__(self, scorer):
            super().__init__()
            self.scorer = scorer
            self.config = scorer.config

        def forward(self, input_ids):
            return self.scorer(input_ids)

    return ScorerGraph(scorer).eval()


def export_scorer_graph(scorer, path: Path, trace_tokens: int) -> None:
    """Write `scorer` (an EvaluatorHeadScorer in fp32) to `path`, traced on a dummy prompt of `trace_tokens`."""
    from optimum.exporters.onnx.convert import export

    config = _onnx_config_class()(scorer.config, task="feature-extraction")
    with quiet_libraries():
        export(_graph_module(scorer), config, Path(path), opset=OPSET,
               input_shapes={"batch_size": 1, "sequence_length": trace_tokens})


def gate_tokens(discovery_tokens: int, sliding_window: int, max_positions: int) -> int:
    """Probe length for the gate: discovery's, at least 256, and past a sliding window when the model has one."""
    return min(max(discovery_tokens, 256, sliding_window + 64 if sliding_window else 0), max_positions)


def probe_text(tokenizer, spec, tokens: int) -> str:
    """The spec's needle and question in real-text filler (depth 0.5), about `tokens` tokens."""
    return build_probes(tokenizer, tokens, needle=spec.probe.needle, question=spec.probe.question, depths=[0.5],
                        seed=spec.probe.seed)[0].text


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _score_row(torch_compressor, onnx_compressor, text: str):
    ids = torch_compressor.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    expected, got = torch_compressor.token_scores(ids), onnx_compressor.token_scores(ids)
    if tuple(got.shape) != tuple(expected.shape):
        raise ValueError(f"ONNX scorer returned shape {tuple(got.shape)}, torch {tuple(expected.shape)}")
    return {"tokens": ids.shape[1], "scores_max_abs_diff": float((got - expected).abs().max())}, expected, got


def scorer_parity(torch_compressor, onnx_compressor, probe: str, extra=(SHORT_PROBE,)) -> dict:
    """Scores max abs diff on `probe` and each `extra` text; on `probe`, agreement of what is kept at the default
    rate: the words (`compress`, the text selection) and the exact-budget tokens (`select_tokens`)."""
    row, expected, got = _score_row(torch_compressor, onnx_compressor, probe)
    rate, n_o = torch_compressor.default_rate, torch_compressor.tail_tokens
    k = selection.budget(row["tokens"], rate, None)
    words_t, words_o = torch_compressor.compress(probe, rate=rate), onnx_compressor.compress(probe, rate=rate)
    tokens_t = set(selection.select_tokens(expected, k, n_o).tolist())
    tokens_o = set(selection.select_tokens(got, k, n_o).tolist())
    row.update(rate=rate, kept_words=len(words_t.kept_spans),
               kept_words_agreement=round(_jaccard(set(words_t.kept_spans), set(words_o.kept_spans)), 6),
               kept_tokens_agreement=round(_jaccard(tokens_t, tokens_o), 6),
               kept_text_identical=words_t.text == words_o.text)
    rows = [row] + [_score_row(torch_compressor, onnx_compressor, text)[0] for text in extra]
    summary = {"scores_max_abs_diff": max(r["scores_max_abs_diff"] for r in rows),
               **{key: row[key] for key in ("kept_words_agreement", "kept_tokens_agreement", "kept_text_identical")}}
    return {"summary": summary, "probes": rows}


def scorer_problems(summary: dict, atol: float, min_kept_agreement: float) -> list[str]:
    problems = []
    if summary["scores_max_abs_diff"] > atol:
        problems.append(f"scores max abs diff {summary['scores_max_abs_diff']:.3g} > {atol:g}")
    kept = summary["kept_words_agreement"]
    if kept < min_kept_agreement:
        problems.append(f"kept-words agreement {kept} < {min_kept_agreement:g}")
    return problems


def write_scorer(model_dir: Path, staging: Path, atol: float = DEFAULT_SCORER_ATOL,
                 min_kept_agreement: float = DEFAULT_MIN_KEPT_AGREEMENT, probe_tokens: int | None = None,
                 progress=lambda m: None) -> dict:
    """Export MODEL_DIR's scorer into STAGING (scorer.onnx, prompt_compressor.json, tokenizer) and check it.

    Raises CheckFailed when the ONNX scorer disagrees with torch (the caller's atomic folder then vanishes);
    returns what compressor.json records under "scorer".
    """
    import torch
    from transformers import AutoTokenizer

    started = time.perf_counter()
    spec = read_spec(model_dir)
    progress(f"scorer: loading layers 0..{spec.layer} of {model_dir} in fp32")
    torch_compressor = PromptCompressor.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = torch_compressor.tokenizer
    config = torch_compressor.scorer.config
    window = getattr(config, "sliding_window", None) or 0
    probe = probe_text(tokenizer, spec, probe_tokens or gate_tokens(spec.probe.tokens, window,
                                                                    config.max_position_embeddings))
    trace_tokens = max(2 * spec.n_o, 2 * spec.kernel, window + 1, 64)
    progress(f"scorer: exporting layers 0..{spec.layer} with optimum-onnx (opset {OPSET})")
    t0 = time.perf_counter()
    path = Path(staging) / SCORER_FILE
    export_scorer_graph(torch_compressor.scorer, path, trace_tokens)
    export_s = time.perf_counter() - t0
    shutil.copy2(Path(model_dir) / PROMPT_SPEC_FILE, Path(staging) / PROMPT_SPEC_FILE)
    if not (Path(staging) / "tokenizer_config.json").is_file():
        AutoTokenizer.from_pretrained(model_dir).save_pretrained(staging)
    progress("scorer: parity, onnxruntime vs torch on the probe prompts")
    onnx_compressor = OnnxPromptCompressor(tokenizer, OnnxScorer(path), spec)
    parity = scorer_parity(torch_compressor, onnx_compressor, probe)
    problems = scorer_problems(parity["summary"], atol, min_kept_agreement)
    if problems:
        raise CheckFailed(f"{model_dir}: the ONNX scorer disagrees with torch: {'; '.join(problems)}")
    files = onnx_files(Path(staging), SCORER_FILE)  # + scorer.onnx_data when the weights exceed 2 GB
    return {"file": SCORER_FILE, "files": [p.name for p in files],
            "size_mb": round(sum(p.stat().st_size for p in files) / 2**20, 2), "opset": OPSET,
            "inputs": {"input_ids": ["1", "sequence_length"]}, "outputs": {"scores": ["sequence_length"]},
            "layer": spec.layer, "layers_exported": spec.layer + 1, "heads": spec.heads, "n_o": spec.n_o,
            "kernel": spec.kernel, "spec_file": PROMPT_SPEC_FILE,
            "parity": {"atol": atol, "min_kept_agreement": min_kept_agreement, "reference": "torch fp32 scorer",
                       "trace_tokens": trace_tokens, **parity},
            "passed": True, "seconds": {"export": round(export_s, 2),
                                        "total": round(time.perf_counter() - started, 2)}}


def scorer_summary_line(record: dict) -> str:
    """One line for people: what was exported and how it compares with torch."""
    summary = record["parity"]["summary"]
    tokens = max(p["tokens"] for p in record["parity"]["probes"])
    return (f"[green]PASS[/green]: {record['file']} (layers 0..{record['layer']}, heads {record['heads']}, "
            f"{record['size_mb']:.1f} MB): scores max diff {summary['scores_max_abs_diff']:.2g} "
            f"(<= {record['parity']['atol']:g}), kept words agreement {summary['kept_words_agreement']:.2f} "
            f"on a {tokens}-token probe; {record['seconds']['total']:.1f} s")
