"""Run a recipe: resolve the source, check the stages, apply them, write atomically, evaluate, report."""

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from compressor.catalogue import stage_function
from compressor.core.atomic import atomic_dir, output_lock, refuse_existing, remove_abandoned
from compressor.core.errors import EvaluationIncomplete, UserError
from compressor.core.files import folder_size_mb
from compressor.core.layout import CONFIG_FILE, MODEL_DIR, RECIPE_FILE
from compressor.core.versions import package_versions
from compressor.evaluate.judge import judge
from compressor.export.writer import write_artifacts, write_model
from compressor.models.adapters import adapter_for
from compressor.models.checkpoint import check_model_folder
from compressor.models.offload import is_offloaded
from compressor.models.sources import (check_memory_devices, content_hash, load_config, load_model, load_teacher,
                                       offload_options, pick_device, pick_dtype, resolve_source)
from compressor.plan.planner import check_plan
from compressor.recipe import check_against_config
from compressor.reports.report import add_evaluation, write_reports
from compressor.runtimes.vllm_runtime import require_vllm
from compressor.stages import StageContext, check_offloaded


def _quiet(message: str) -> None:
    pass


def apply_recipe(recipe, recipe_source: str, out_dir: Path | None = None, force: bool = False,
                 evaluate: bool | None = None, progress=_quiet, fresh_baseline: bool = False,
                 samples_dir: Path | None = None, record_source_path: bool = False, memory: int | None = None) -> dict:
    """Apply `recipe`; returns the report (also written to `out_dir/report.json`).

    The plan (compressor.plan) runs first, from the config: a run whose peak memory exceeds `memory` (bytes;
    default what the device has) or whose output exceeds the free disk is refused before anything loads.
    The output folder is written (atomically) before the evaluation starts: an evaluation that fails or is
    interrupted leaves a complete model and a report marked "evaluation incomplete" that names the command
    finishing it (`compressor eval OUT`), and raises EvaluationIncomplete.
    """
    out_dir = Path(out_dir or recipe.output_dir())
    refuse_existing(out_dir, force)
    with output_lock(out_dir):  # a second run to the same output is refused now, not after the work
        remove_abandoned(out_dir, progress)
        return _apply(recipe, recipe_source, out_dir, force, evaluate, progress, fresh_baseline, samples_dir,
                      record_source_path, memory)


def _apply(recipe, recipe_source: str, out_dir: Path, force: bool, evaluate: bool | None, progress,
           fresh_baseline: bool, samples_dir: Path | None, record_source_path: bool, memory: int | None) -> dict:
    started = time.perf_counter()
    source = resolve_source(recipe.model.id, recipe.model.revision)
    check_model_folder(source.path, recipe.model.allow_pickle)
    config = load_config(source, recipe.model.trust_remote_code)
    adapter = adapter_for(config)
    run_eval = recipe.eval.enabled if evaluate is None else evaluate
    warnings = check_against_config(
        recipe.model_copy(update={"eval": recipe.eval.model_copy(update={"enabled": run_eval})}),
        config, recipe_source, source.path)
    for warning in warnings:
        progress(f"warning: {warning}")
    if run_eval and recipe.eval.runtime == "vllm":
        require_vllm()  # before the work: a failed evaluation discards the unfinished output

    device = pick_device(recipe.model.device)
    plan = check_plan(recipe, config, device, recipe_source, source.path, out_dir, memory, run_eval)
    progress(f"plan: peak ~{plan.peak.peak / 1e9:.2f} GB at {plan.peak.name}"
             + (f" of {plan.budget / 1e9:.1f} GB available" if plan.budget else ""))
    check_memory_devices(recipe.model.max_memory, f"{recipe_source}: model.max_memory")
    source_hash = content_hash(source.path, progress)
    progress(f"loading {source.id} on {device}")
    model, tokenizer = load_model(source.path, device, pick_dtype(recipe.model.dtype),
                                  recipe.model.trust_remote_code, **offload_options(recipe.model))
    if recipe.model.device_map and is_offloaded(model):  # known only now: what accelerate put on the CPU / disk
        try:
            check_offloaded(recipe.stages)
        except ValueError as error:
            raise UserError(f"{recipe_source}: {error}") from None

    teacher = None
    if any(p.needs_teacher for p in recipe.stages):  # an offloaded model is loaded again, not copied whole
        teacher = load_teacher(source.path, device, pick_dtype(recipe.model.dtype), recipe.model.trust_remote_code,
                               **offload_options(recipe.model)) if recipe.model.device_map else frozen_copy(model)
    stage_reports, artifacts = [], {}
    for index, params in enumerate(recipe.stages, 1):
        progress(f"stage {index}/{len(recipe.stages)}: {params.stage}")
        ctx = StageContext(adapter=adapter, device=device, progress=progress, teacher=teacher)
        t0 = time.perf_counter()
        model = stage_function(params.stage)(model, tokenizer, params, ctx)
        artifacts.update(ctx.artifacts)
        stage_reports.append({"stage": params.stage, "params": params.model_dump(mode="json", by_alias=True),
                              "seconds": round(time.perf_counter() - t0, 2), "result": ctx.records})
    teacher = ctx = None  # free the teacher before writing
    problems = adapter.config_problems(model.config)
    if problems:
        raise RuntimeError(f"stages left an inconsistent config: {'; '.join(problems)}")

    source_record = {"id": source.id, "kind": source.kind, "path": str(source.path), "sha256": source_hash,
                     "size_mb": round(folder_size_mb(source.path), 2)}
    provenance = {
        "recipe": recipe.name,
        # model/ travels (submit.zip): a local source is named by its folder, its path kept only on request
        "source": source_record if record_source_path else private_source(source_record),
        "stages": [{"stage": s["stage"], "params": s["params"]} for s in stage_reports],
        "versions": package_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    with atomic_dir(out_dir, force=force, progress=progress) as staging:
        progress(f"writing {out_dir / MODEL_DIR}")
        write_model(model, tokenizer, staging / MODEL_DIR, provenance)
        write_artifacts(artifacts, staging)
        del model
        (staging / RECIPE_FILE).write_text(
            yaml.safe_dump(recipe.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=False))
        report = {
            "recipe": recipe.name,
            "recipe_file": recipe_source,
            "output": str(out_dir),
            "source": source_record,
            "stages": stage_reports,
            "model": {"size_mb": round(folder_size_mb(staging / MODEL_DIR), 2),
                      "num_hidden_layers": config_value(staging / MODEL_DIR, "num_hidden_layers")},
            "versions": provenance["versions"],
        }
        if warnings:
            report["warnings"] = warnings
        if run_eval:
            report["evaluation"] = {"status": "pending", "finish_with": f"compressor eval {out_dir}"}
        report["seconds"] = round(time.perf_counter() - started, 2)
        write_reports(report, staging)
    if not run_eval:
        return report
    baseline = source.path if recipe.eval.baseline else None
    try:
        result = judge(out_dir / MODEL_DIR, baseline, recipe.eval, device, progress, fresh_baseline,
                       samples_dir=samples_dir)
    except BaseException as error:
        interrupted = isinstance(error, KeyboardInterrupt)
        reason = "interrupted" if interrupted else one_line(f"{type(error).__name__}: {error}")
        report["evaluation"] = {"status": "incomplete", "error": reason, "finish_with": f"compressor eval {out_dir}"}
        write_reports(report, out_dir)
        raise EvaluationIncomplete(f"evaluation {reason if interrupted else 'failed: ' + reason}; the model is "
                                   f"written ({out_dir / MODEL_DIR}): finish with `compressor eval {out_dir}`",
                                   exit_code=130 if interrupted else 2) from error
    report = add_evaluation(report, result)
    report.pop("evaluation", None)
    report["seconds"] = round(time.perf_counter() - started, 2)
    write_reports(report, out_dir)
    return report


def private_source(record: dict) -> dict:
    """The source as model/compressor.json records it: a local folder by its name, without its path."""
    record = {k: v for k, v in record.items() if k != "path"}
    if record["kind"] == "local":
        record["id"] = Path(record["id"]).name
    return record


def one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def frozen_copy(model):
    """The model as it is now, detached from later edits: eval mode, no gradients (the heal stage's teacher)."""
    import copy

    return copy.deepcopy(model).eval().requires_grad_(False)


def config_value(model_dir: Path, key: str):
    return json.loads((Path(model_dir) / CONFIG_FILE).read_text()).get(key)
