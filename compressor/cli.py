"""The `compressor` command line: parse, call, render. No logic of its own."""

import json
import sys
from pathlib import Path

import click

from compressor.cli_output import stderr_console, emit, progress_printer
from compressor.errors import UserError


def mlflow_options(fn):
    """--mlflow / --mlflow-uri: log the evaluated report as an MLflow run (optional dependency)."""
    fn = click.option("--mlflow-uri", default=None, metavar="URI",
                      help="Tracking URI (default $MLFLOW_TRACKING_URI, else the local store file:./mlruns).")(fn)
    return click.option("--mlflow", "use_mlflow", is_flag=True,
                        help="Log params, metrics and report files as an MLflow run.")(fn)


def _log_mlflow(report: dict, folder: Path, uri: str | None, progress) -> None:
    from compressor.tracking import log_report

    logged = log_report(report, folder, uri)
    report["mlflow"] = logged
    progress(f"MLflow run {logged['run_id']} in {logged['uri']} (experiment {logged['experiment']})")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="compressor")
def cli():
    """Compress a causal LM with a YAML recipe, judge it, and export what vLLM loads.

    \b
    compressor apply recipes/fp16.yaml           # the bundled SmolLM2-135M -> out/fp16/
    compressor eval out/fp16                     # perplexity, time/token, Score vs source
    compressor package out/fp16 --target export/targets/lg-aimers.yaml
    """


@cli.command()
@click.argument("recipe_file", type=click.Path(path_type=Path))
@click.option("--model", "model_id", help="Override the recipe's model (builtin:NAME, folder, or hub id).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Output folder (default: recipe output.dir or out/<name>).")
@click.option("--force", is_flag=True, help="Overwrite an existing output folder.")
@click.option("--no-eval", is_flag=True, help="Skip the recipe's evaluation.")
@click.option("--fresh-baseline", is_flag=True, help="Re-measure the source instead of using the baseline cache.")
@mlflow_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def apply(recipe_file, model_id, out_dir, force, no_eval, fresh_baseline, use_mlflow, mlflow_uri, as_json):
    """Apply RECIPE_FILE: load the model, run the stages, write OUT/model, evaluate, report.

    \b
    Example:
      compressor apply recipes/fp16.yaml
      compressor apply recipes/drop-layers.yaml --model ./EXAONE-4.0-1.2B --out out/drop --force
    """
    from compressor.pipeline import apply_recipe
    from compressor.recipe import load_recipe
    from compressor.report import rich_table

    recipe = load_recipe(recipe_file)
    if model_id:
        recipe.model.id = model_id
    if use_mlflow:
        from compressor.tracking import require_mlflow

        require_mlflow()  # fail before the model is touched
    progress = progress_printer(not as_json)
    report = apply_recipe(recipe, str(recipe_file), out_dir=out_dir, force=force,
                          evaluate=False if no_eval else None, progress=progress,
                          fresh_baseline=fresh_baseline)
    if use_mlflow:
        _log_mlflow(report, Path(report["output"]), mlflow_uri, progress)

    def render(rep):
        console = stderr_console()
        if rep.get("eval"):
            console.print(rich_table(rep))
        console.print(f"wrote {rep['output']}/model ({rep['model']['size_mb']:.1f} MB) and report.json, "
                      f"report.md in {rep['seconds']:.1f} s")

    emit(report, as_json, render)


def eval_options(fn):
    """Options shared by `eval` (and the evaluation block of a recipe)."""
    for option in reversed([
        click.option("--runtime", type=click.Choice(["torch", "vllm"]), default="torch", show_default=True,
                     help="torch in this environment, or vLLM (CPU build) from .venv-vllm."),
        click.option("--suite", default="default", show_default=True, help="Suite name in eval/suites or a YAML path."),
        click.option("--limit", type=int, default=None, help="Cap every task at this many items (quick runs)."),
        click.option("--batch-size", type=int, default=8, show_default=True, help="lm-eval batch size."),
        click.option("--prompt-tokens", type=int, default=256, show_default=True),
        click.option("--new-tokens", type=int, default=128, show_default=True),
        click.option("--runs", type=int, default=5, show_default=True, help="Timed runs (median reported)."),
        click.option("--batch-sizes", default="1", show_default=True, help="Comma-separated; the first is scored."),
    ]):
        fn = option(fn)
    return fn


def press_options(fn):
    """--kv-press and its parameters (torch runtime), shared by `eval` and `bench`."""
    from compressor.evaluate.kv_spec import PRESS_NAMES

    for option in reversed([
        click.option("--kv-press", default=None, metavar="NAME",
                     help=f"KV-cache press (kvpress), torch runtime only: {', '.join(PRESS_NAMES)}."),
        click.option("--kv-ratio", type=float, default=0.0, show_default=True,
                     help="Fraction of cached positions the press removes, in [0, 1)."),
        click.option("--n-sink", type=int, default=None, help="First positions always kept (streaming_llm, "
                                                              "expected_attention; kvpress default 4)."),
        click.option("--window", type=int, default=None, help="streaming_llm: keep n_sink + WINDOW positions."),
        click.option("--long-context", "long_context", type=int, default=None, metavar="TOKENS",
                     help="Also measure ppl, decode ms/token and memory on a TOKENS-long document "
                          "(default 4096 with a press)."),
        click.option("--chunk", type=int, default=None, help="Long-context prefill chunk (default 128)."),
    ]):
        fn = option(fn)
    return fn


def eval_spec_from_options(baseline: bool, runtime, suite, limit, batch_size, prompt_tokens, new_tokens, runs, batch_sizes,
                           kv_press=None, kv_ratio=0.0, n_sink=None, window=None, long_context=None, chunk=None):
    from pydantic import ValidationError

    from compressor.recipe import EvalSpec, format_validation_error

    press = None
    if kv_press is not None or window is not None or n_sink is not None or kv_ratio:
        press = {"press": kv_press or "none", "ratio": kv_ratio, "n_sink": n_sink, "window": window}
    long = None
    if long_context is not None or chunk is not None:
        long = {k: v for k, v in (("tokens", long_context), ("chunk", chunk)) if v is not None}
    try:
        return EvalSpec(baseline=baseline, runtime=runtime, suite=suite, limit=limit, batch_size=batch_size,
                        latency={"prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "runs": runs,
                                 "batch_sizes": [int(b) for b in batch_sizes.split(",")]},
                        kv_press=press, long_context=long)
    except (ValidationError, ValueError) as error:
        message = format_validation_error("options", error) if isinstance(error, ValidationError) else str(error)
        raise UserError(message) from None


@cli.command(name="eval")
@click.argument("output_dir", type=click.Path(path_type=Path))
@click.option("--baseline", help="Baseline model (default: the source recorded in model/compressor.json).")
@click.option("--no-baseline", is_flag=True, help="Measure the model only.")
@click.option("--fresh-baseline", is_flag=True, help="Re-measure the baseline instead of using the cache.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N (torch runtime).")
@eval_options
@press_options
@mlflow_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def evaluate(output_dir, baseline, no_baseline, fresh_baseline, device, use_mlflow, mlflow_uri, as_json, **options):
    """Evaluate OUTPUT_DIR/model against its source: suite tasks, time per token, Score.

    The result is added to OUTPUT_DIR/report.json (and report.md, report.png) under its runtime,
    beside what `apply` measured; a bare model folder is never written to.

    \b
    Example:
      compressor eval out/fp16
      compressor eval out/fp16 --runtime vllm
      compressor eval out/fp16 --suite quick --baseline builtin:smollm2-135m --json
      compressor eval out/fp16 --kv-press snapkv --kv-ratio 0.5          # label torch+snapkv@0.5
      compressor eval out/fp16 --kv-press streaming_llm --n-sink 4 --window 1024
    """
    from compressor.evaluate.evaluate_dir import evaluate_output

    from compressor.report import record_evaluation

    spec = eval_spec_from_options(not no_baseline, **options)
    progress = progress_printer(not as_json)
    result = evaluate_output(output_dir, spec, baseline=baseline, device=device, fresh_baseline=fresh_baseline,
                             progress=progress)
    if (Path(output_dir) / "model" / "config.json").is_file():
        report = record_evaluation(output_dir, result)
        progress(f"recorded in {Path(output_dir) / 'report.json'} ({', '.join(report['evals'])})")
    if use_mlflow:
        _log_mlflow(result, Path(output_dir), mlflow_uri, progress)

    def render(rep):
        from compressor.report import rich_table

        stderr_console().print(rich_table(rep))

    emit(result, as_json, render)


@cli.command()
@click.argument("output_dir", type=click.Path(path_type=Path))
@click.option("--target", "target_file", type=click.Path(path_type=Path), required=True,
              help="Target profile, e.g. export/targets/lg-aimers.yaml.")
@click.option("--force", is_flag=True, help="Overwrite an existing submit.zip.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def package(output_dir, target_file, force, as_json):
    """Check OUTPUT_DIR/model against a deployment target and write OUTPUT_DIR/submit.zip.

    \b
    Example:
      compressor package out/fp16 --target export/targets/lg-aimers.yaml
    """
    from compressor.export.package import package as make_package
    from compressor.export.targets import load_target

    result = make_package(output_dir, load_target(target_file), force=force)
    emit(result, as_json, lambda r: click.echo(
        f"wrote {r['zip']} ({r['zipped_bytes'] / 2**20:.1f} MB, {len(r['files'])} files) for target {r['target']}"))


@cli.command()
@click.argument("output_dir", type=click.Path(path_type=Path))
@click.option("--runtime", type=click.Choice(["torch", "vllm"]), default="torch", show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N (torch runtime).")
@click.option("--prompt-tokens", type=int, default=256, show_default=True)
@click.option("--new-tokens", type=int, default=128, show_default=True)
@click.option("--runs", type=int, default=5, show_default=True, help="Timed runs after warm-up (median and spread).")
@click.option("--warmup", type=int, default=1, show_default=True)
@click.option("--batch-sizes", default="1,8", show_default=True, help="Comma-separated batch sizes.")
@press_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def bench(output_dir, runtime, device, prompt_tokens, new_tokens, runs, warmup, batch_sizes, as_json, **press):
    """Time per output token of OUTPUT_DIR/model (greedy, fixed prompt/output length, warm-up, median of runs).

    \b
    Example:
      compressor bench out/fp16
      compressor bench out/fp16 --runtime vllm --batch-sizes 1,8 --json
      compressor bench out/fp16 --kv-press knorm --kv-ratio 0.5 --long-context 4096
    """
    from compressor.evaluate.bench import bench_torch, bench_torch_press, bench_vllm
    from compressor.evaluate.evaluate_dir import model_folder
    from compressor.models.sources import pick_device

    spec = eval_spec_from_options(False, runtime, "default", None, 8, prompt_tokens, new_tokens, runs, batch_sizes,
                                  **press)
    folder = model_folder(output_dir)
    sizes = spec.latency.batch_sizes
    if spec.press_run() or spec.long_context is not None:
        result = bench_torch_press(folder, pick_device(device), spec, warmup)
    elif runtime == "vllm":
        result = bench_vllm(folder, prompt_tokens, new_tokens, runs, warmup, sizes)
    else:
        result = bench_torch(folder, pick_device(device), prompt_tokens, new_tokens, runs, warmup, sizes)

    def render(res):
        from rich.table import Table

        table = Table(title=f"{folder} on {res['runtime']} ({res['device']}), {prompt_tokens}+{new_tokens} tokens")
        for column in ("batch", "ms/token median", "min", "max", "tokens/s"):
            table.add_column(column, justify="right")
        for batch, b in res["batches"].items():
            table.add_row(batch, f"{b['tpt_ms_median']:.2f}", f"{b['tpt_ms_min']:.2f}", f"{b['tpt_ms_max']:.2f}",
                          f"{b['output_tokens_per_s']:.1f}")
        console = stderr_console()
        console.print(table)
        if res.get("without_press"):
            for batch, b in res["without_press"]["batches"].items():
                console.print(f"without the press, batch {batch}: {b['tpt_ms_median']:.2f} ms/token")
        if res.get("long_context_points"):
            from compressor.evaluate.kv_report import long_context_lines

            console.print("\n".join(long_context_lines({"model": res})))
        if res.get("peak_rss_mb"):
            console.print(f"peak RSS {res['peak_rss_mb']:.0f} MB")

    emit(result, as_json, render)


@cli.command(name="report")
@click.argument("output_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON on stdout.")
def report_command(output_dirs, as_json):
    """Tabulate several outputs side by side, sorted by Score (from each report.json).

    \b
    Example:
      compressor report out/*
    """
    from compressor.report import comparison_rows, comparison_table

    rows = comparison_rows(output_dirs)
    emit({"rows": rows}, as_json, lambda r: stderr_console().print(comparison_table(r["rows"])))


@cli.group()
def recipes():
    """List, validate and describe recipes."""


@recipes.command(name="list")
@click.option("--dir", "folder", type=click.Path(path_type=Path), default=None, help="Recipe folder (default: recipes/).")
def list_recipes(folder):
    """List the recipes in recipes/ with their descriptions."""
    from compressor.paths import repo_root
    from compressor.recipe import load_recipe

    folder = folder or repo_root() / "recipes"
    for path in sorted(Path(folder).glob("*.yaml")):
        recipe = load_recipe(path)
        stages = ", ".join(s.stage for s in recipe.stages) or "(no stages)"
        click.echo(f"{path.name:24} {stages:32} {recipe.description}")


@recipes.command()
@click.argument("recipe_files", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(recipe_files):
    """Check recipes without loading any model. Example: compressor recipes validate recipes/*.yaml"""
    from compressor.recipe import load_recipe

    for path in recipe_files:
        load_recipe(path)
        click.echo(f"{path}: ok")


@recipes.command()
def schema():
    """Print the recipe JSON schema (for editors and validators)."""
    from compressor.recipe import recipe_model

    click.echo(json.dumps(recipe_model().model_json_schema(by_alias=True), indent=2))


from compressor.cli_check import check  # noqa: E402
from compressor.cli_export import export  # noqa: E402
from compressor.cli_importance import importance  # noqa: E402
from compressor.prompt.cli import prompt_group  # noqa: E402

cli.add_command(check)
cli.add_command(importance)
cli.add_command(export)
cli.add_command(prompt_group)


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # so SIGTERM also unwinds and removes half-written temp folders


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        cli.main(standalone_mode=False)
    except UserError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
