"""`compressor eval DIR`: the suite, time per token and Score against the source, recorded in DIR's report."""

from pathlib import Path

import click

from compressor.cli.options import eval_options, eval_spec_from_options, log_mlflow, mlflow_options, press_options
from compressor.cli.output import emit, progress_printer, stderr_console
from compressor.core.errors import UserError

ENGINE_OPTIONS = ("tensor_parallel_size", "gpu_memory_utilization", "data_parallel_size")


def vllm_engine_options(data_parallel: bool = True):
    """--tensor-parallel-size / --gpu-memory-utilization (and --data-parallel-size): vLLM GPU builds."""
    options = [
        click.option("--tensor-parallel-size", type=click.IntRange(1, 1024), default=None,
                     help="vLLM (GPU build): GPUs one engine spans (default: the target's or recipe's, else 1)."),
        click.option("--gpu-memory-utilization", type=click.FloatRange(0, 1, min_open=True), default=None,
                     help="vLLM (GPU build): its share of GPU memory (default: the target's, else vLLM's 0.9)."),
    ]
    if data_parallel:
        options.append(click.option("--data-parallel-size", type=click.IntRange(1, 1024), default=None,
                                    help="vLLM (GPU build, needs ray): lm-eval's engine replicas for the tasks; "
                                         "synthetic timing only."))

    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def given_engine(options: dict, runtime: str) -> dict:
    """The engine options given (popped from `options`); UserError when given for a runtime other than vllm."""
    given = {name: value for name in ENGINE_OPTIONS if (value := options.pop(name, None)) is not None}
    if given and runtime != "vllm":
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UserError(f"{flags}: vLLM engine settings, for --runtime vllm only (this run: {runtime})")
    return given


def with_engine(spec, engine: dict):
    """`spec` with `engine` over its engine block (recipe, target), validated as EngineSpec."""
    if not engine:
        return spec
    from pydantic import ValidationError

    from compressor.core.validation import format_validation_error
    from compressor.evaluate.spec import EngineSpec

    try:
        merged = EngineSpec(**{**(spec.engine.model_dump() if spec.engine else {}), **engine})
    except ValidationError as error:
        raise UserError(format_validation_error("options", error)) from None
    return spec.model_copy(update={"engine": merged})


@click.command(name="eval")
@click.argument("output_dir", type=click.Path(path_type=Path))
@click.option("--baseline", help="Baseline model (default: the source recorded in model/compressor.json).")
@click.option("--no-baseline", is_flag=True, help="Measure the model only.")
@click.option("--fresh-baseline", is_flag=True, help="Re-measure the baseline instead of using the cache.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N (torch runtime).")
@eval_options
@vllm_engine_options()
@press_options
@mlflow_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def evaluate(output_dir, baseline, no_baseline, fresh_baseline, device, use_mlflow, mlflow_uri, as_json, **options):
    """Evaluate OUTPUT_DIR/model against its source: suite tasks, time per token, Score.

    Settings: the output's recipe.yaml `eval:` block (so `compressor eval OUT` finishes what `apply`
    started), then --target's profile, then the options given here. The result is added to
    OUTPUT_DIR/report.json (and report.md, report.png) under its runtime, beside what `apply` measured;
    a bare model folder is never written to.

    \b
    Example:
      compressor eval out/fp16
      compressor eval out/fp16 --runtime vllm
      compressor eval out/fp16 --suite quick --baseline builtin:smollm2-135m --json
      compressor eval out/fp16 --kv-press snapkv --kv-ratio 0.5          # label torch+snapkv@0.5
      compressor eval out/fp16 --kv-press streaming_llm --n-sink 4 --window 1024
      compressor eval out/w8a8 --target lg-aimers --log-samples out/w8a8/samples   # the server's judge
      compressor eval out/fp16 --runtime vllm --tensor-parallel-size 2 --gpu-memory-utilization 0.8  # CUDA vllm
    """
    from compressor.cli.options import explicit_options, recipe_eval_settings, target_eval_settings
    from compressor.core.layout import REPORT_JSON, is_output
    from compressor.evaluate.output import evaluate_output
    from compressor.reports.report import record_evaluation, rich_table

    samples_dir = options.pop("samples_dir")
    # the recipe's own eval block (what `apply` judged with), then a target's profile, then the command line
    layers = (recipe_eval_settings(output_dir), target_eval_settings(options.pop("target_name")))
    engine = {name: options.pop(name) for name in ENGINE_OPTIONS}
    spec = eval_spec_from_options(not no_baseline, **options, layers=layers, explicit=explicit_options())
    spec = with_engine(spec, given_engine(engine, spec.runtime))
    progress = progress_printer(not as_json)
    result = evaluate_output(output_dir, spec, baseline=baseline, device=device, fresh_baseline=fresh_baseline,
                             progress=progress, samples_dir=samples_dir)
    if is_output(output_dir):
        report = record_evaluation(output_dir, result)
        progress(f"recorded in {Path(output_dir) / REPORT_JSON} ({', '.join(report['evals'])})")
    if use_mlflow:
        log_mlflow(result, Path(output_dir), mlflow_uri, progress)
    emit(result, as_json, lambda rep: stderr_console().print(rich_table(rep)))
