"""`compressor export onnx DIR`: the output's model as an ONNX decoder with KV cache, checked against torch.

optimum-onnx exports the model (task text-generation-with-past) in fp32 (fp16 / bf16 weights upcast exactly:
CPUs run fp32 ONNX, and parity is measured against the fp32 reference, run on `device`: CUDA when available;
the export itself runs on the CPU). The export must agree with the torch
model (`onnx_parity`): logits within `atol` and greedy agreement at least `min_agreement`, or nothing is
written. `--int8` adds an onnxruntime int8 copy (`onnx_int8`) whose parity and speed are reported, not gated:
int8 is lossy by design. Everything goes to DIR/onnx/ (or `out`) atomically, with compressor.json
(source hash, parity, sizes, timings, versions).

When the model folder carries an EHPC pre-compressor (prompt_compressor.json), its scorer (layers 0..L*) is
exported too, as scorer.onnx with its own parity gate (`scorer_onnx`); `scorer=False` skips it, `scorer=True`
requires it, `scorer_only` writes just the scorer (no model.onnx).
"""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path

from compressor.core.atomic import atomic_dir, refuse_existing
from compressor.core.errors import CheckFailed, UserError
from compressor.core.layout import (INT8_FILE, ONNX_FILE, ONNX_RECORD_FILE, PROMPT_SPEC_FILE, onnx_files,
                                    resolve)
from compressor.core.versions import package_versions
from compressor.export.library_noise import quiet_libraries
from compressor.export.onnx_configs import register_family_configs
from compressor.export.onnx_int8 import METHODS, quantize_int8
from compressor.export.parity import DEFAULT_MIN_AGREEMENT, PROMPTS, onnx_parity, torch_reference
from compressor.export.scorer_onnx import write_scorer
from compressor.models.adapters import adapter_for
from compressor.models.checkpoint import check_model_folder
from compressor.models.sources import content_hash, load_model, pick_device
from compressor.prompt.spec import check_matches, read_spec

TASK = "text-generation-with-past"
# fp32 ONNX vs fp32 torch: ~1e-4 on SmolLM2 (30 layers), ~1e-5 on the tiny models; a wrong mask, rotary
# or cache gives differences of order 1
DEFAULT_ATOL = 1e-2


def _quiet(message: str) -> None:
    pass


def require_onnx_packages() -> None:
    """optimum-onnx and an onnxruntime build (CPU or GPU) must be importable: one line if not."""
    missing = []
    for module, package in (("optimum.exporters.onnx", "optimum-onnx"), ("onnx", "onnx"),
                            ("onnxruntime", "onnxruntime (or onnxruntime-gpu)")):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise UserError(f"ONNX export needs {', '.join(missing)}: pip install -e '.[onnx]' "
                        "(CPU) or -e '.[gpu]' (CUDA; never both in one environment)")


def export_model(model, tokenizer, folder: Path, task: str = TASK, onnx_config=None) -> None:
    """Write `model` (a torch model of a supported family) as folder/model.onnx with its config and tokenizer.

    Takes a model, not a checkpoint folder, so that any in-memory model (an edited one, a model cut to its first
    layers) exports the same way; `onnx_config` (an optimum OnnxConfig) describes inputs and outputs other than a
    causal LM's (e.g. per-token scores). Weights above 2 GB go to model.onnx_data beside it (optimum's choice).
    """
    from optimum.exporters.onnx import onnx_export_from_model

    adapter_for(model.config)  # only families with an adapter (their cache shape is known)
    register_family_configs()
    custom = {"model": onnx_config} if onnx_config is not None else None
    with quiet_libraries():
        onnx_export_from_model(model, Path(folder), task=task, custom_onnx_configs=custom, do_validation=False)
    tokenizer.save_pretrained(folder)


def _artifact(folder: Path, name: str, label: str, reference: dict, tokenizer, max_tokens: int) -> dict:
    files = onnx_files(folder, name)
    parity = onnx_parity(folder / name, reference, tokenizer, max_tokens)
    return {"name": label, "file": name, "files": [p.name for p in files],
            "size_mb": round(sum(p.stat().st_size for p in files) / 2**20, 2), "load_s": parity["load_s"],
            **parity["summary"], "prompts": parity["prompts"], "parity_s": parity["seconds"]}


def _check_target(folder: Path, target: Path) -> None:
    target, folder = target.resolve(), folder.resolve()
    if target == folder or target in folder.parents:
        raise UserError(f"{target}: would replace the model folder {folder} (choose another --out)")


def _scorer_spec(folder: Path, config, scorer: bool | None, scorer_only: bool):
    """The pre-compressor spec to export the scorer of, or None; UserError when asked for and absent or stale."""
    if scorer is False:
        if scorer_only:
            raise UserError("--scorer-only and --no-scorer contradict each other")
        return None
    if not (folder / PROMPT_SPEC_FILE).is_file():
        if scorer or scorer_only:
            raise UserError(f"{folder}: no {PROMPT_SPEC_FILE}, so no EHPC scorer to export (run `compressor prompt "
                            f"discover` or a recipe with the evaluator_heads stage first, or drop --scorer)")
        return None
    spec = read_spec(folder)
    check_matches(spec, config, folder)
    return spec


def _preflight(output_dir: Path, out: Path | None, force: bool, int8: bool, int8_method: str, atol: float,
               min_agreement: float, max_tokens: int, scorer: bool | None = None, scorer_only: bool = False):
    """Every check that needs no model loaded: (model folder, target folder, config, scorer spec or None)."""
    from transformers import AutoConfig

    resolved = resolve(output_dir)
    folder = resolved.model
    check_model_folder(folder)
    target = Path(out) if out else resolved.onnx_dir
    _check_target(folder, target)
    refuse_existing(target, force)
    if int8_method not in METHODS:
        raise UserError(f"unknown int8 method {int8_method!r} (known: {', '.join(METHODS)})")
    if max_tokens < 1 or atol <= 0 or not 0 <= min_agreement <= 1:
        raise UserError("export onnx: need max_tokens >= 1, atol > 0 and 0 <= min_agreement <= 1")
    try:
        config = AutoConfig.from_pretrained(folder)
    except Exception as error:
        raise UserError(f"{folder}/config.json: cannot be read ({type(error).__name__}: {error})") from None
    adapter_for(config)
    spec = _scorer_spec(folder, config, scorer, scorer_only)
    if scorer_only and int8:
        raise UserError("--int8 quantizes model.onnx, which --scorer-only does not write")
    require_onnx_packages()
    return folder, target, config, spec


def _disagreements(fp32: dict, atol: float, min_agreement: float) -> list[str]:
    problems = []
    if fp32["logits_max_abs_diff"] > atol:
        problems.append(f"logits max abs diff {fp32['logits_max_abs_diff']:.3g} > atol {atol:g}")
    if fp32["prefix_agreement"] < min_agreement:
        problems.append(f"greedy prefix agreement {fp32['prefix_agreement']:.2f} < {min_agreement:.2f}")
    return problems


def export_onnx(output_dir: Path, out: Path | None = None, int8: bool = False, int8_method: str = "matmul-nbits",
                force: bool = False, atol: float = DEFAULT_ATOL, min_agreement: float = DEFAULT_MIN_AGREEMENT,
                max_tokens: int = 32, prompts=None, scorer: bool | None = None, scorer_only: bool = False,
                progress=_quiet, device: str = "auto") -> dict:
    """Export OUTPUT_DIR/model to ONNX (see the module doc); returns what compressor.json records.

    scorer: None exports the EHPC scorer when model/prompt_compressor.json exists, True requires it, False skips it.
    device: where the fp32 torch reference runs (auto, cpu, cuda, cuda:N).
    """
    import torch

    started = time.perf_counter()
    folder, target, config, spec = _preflight(output_dir, out, force, int8, int8_method, atol, min_agreement,
                                              max_tokens, scorer, scorer_only)
    torch_device = pick_device(device)
    prompts = list(prompts or PROMPTS)
    progress(f"hashing {folder}")
    source_sha256 = content_hash(folder)
    seconds, artifacts, reference = {}, [], None
    if not scorer_only:
        progress(f"loading {folder} in fp32 on {torch_device}")
        model, tokenizer = load_model(folder, torch_device, torch.float32)
        progress(f"torch reference: greedy {max_tokens} tokens on {len(prompts)} prompts")
        t0 = time.perf_counter()
        reference = torch_reference(model, tokenizer, prompts, max_tokens)
        seconds["reference"] = round(time.perf_counter() - t0, 2)
        if torch_device.type != "cpu":  # the export runs from a CPU copy, as it always has (optimum, fp32)
            del model
            gc.collect()
            torch.cuda.empty_cache()
            model, tokenizer = load_model(folder, torch.device("cpu"), torch.float32)
    with atomic_dir(target, force) as staging:
        if not scorer_only:
            progress(f"exporting with optimum-onnx ({TASK}, fp32)")
            t0 = time.perf_counter()
            export_model(model, tokenizer, staging)
            seconds["export"] = round(time.perf_counter() - t0, 2)
            del model
            gc.collect()
            progress("parity: onnxruntime vs torch fp32")
            artifacts.append(_artifact(staging, ONNX_FILE, "fp32", reference, tokenizer, max_tokens))
            problems = _disagreements(artifacts[0], atol, min_agreement)
            if problems:
                raise CheckFailed(f"{folder}: the fp32 ONNX export disagrees with torch: {'; '.join(problems)} "
                                  f"(nothing written to {target})")
        if int8:
            progress(f"int8: onnxruntime {int8_method} quantization")
            t0 = time.perf_counter()
            quantization = quantize_int8(staging / ONNX_FILE, staging / INT8_FILE, int8_method)
            seconds["int8"] = round(time.perf_counter() - t0, 2)
            progress("parity: int8 vs torch fp32")
            artifacts.append({**_artifact(staging, INT8_FILE, "int8", reference, tokenizer, max_tokens),
                              "quantization": quantization})
        scorer_record = None
        if spec is not None:
            try:
                scorer_record = write_scorer(folder, staging, progress=progress)
            except CheckFailed as error:
                raise CheckFailed(f"{error} (nothing written to {target})") from None
            seconds["scorer"] = scorer_record["seconds"]["total"]
        seconds["total"] = round(time.perf_counter() - started, 2)
        gated = ([] if scorer_only else ["fp32"]) + (["scorer"] if scorer_record else [])
        record = {
            "output": str(output_dir),
            "model": str(folder),
            "source_sha256": source_sha256,
            "onnx_dir": str(target),
            "task": "ehpc-scorer" if scorer_only else TASK,
            "family": config.model_type,
            "dtype": "float32",
            "parity": {"atol": atol, "min_agreement": min_agreement, "max_tokens": max_tokens,
                       "prompts": [] if scorer_only else prompts,
                       "reference": f"torch fp32 on {'cpu' if scorer_only else torch_device} (transformers)",
                       "reference_device": "cpu" if scorer_only else str(torch_device), "gated": gated},
            "passed": True,
            "artifacts": artifacts,
            "scorer": scorer_record,
            "versions": package_versions(),
            "seconds": seconds,
        }
        (staging / ONNX_RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record
