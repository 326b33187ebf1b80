"""`compressor apply RECIPE`: load, run the stages, write OUT/model, evaluate, report."""

from pathlib import Path

import click

from compressor.cli.options import log_mlflow, mlflow_options
from compressor.cli.output import emit, progress_printer, stderr_console
from compressor.core.errors import UserError


@click.command()
@click.argument("recipe_file", type=click.Path(path_type=Path))
@click.option("--model", "model_id", help="Override the recipe's model (builtin:NAME, folder, or hub id).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Output folder (default: recipe output.dir or out/<name>).")
@click.option("--force", is_flag=True, help="Overwrite an existing output folder.")
@click.option("--allow-pickle", is_flag=True, help="Load a source whose weights are pickled (pytorch_model.bin), "
                                                   "unpickled weights-only (tensors, no code).")
@click.option("--no-eval", is_flag=True, help="Skip the recipe's evaluation.")
@click.option("--fresh-baseline", is_flag=True, help="Re-measure the source instead of using the baseline cache.")
@click.option("--suite", default=None, help="Evaluate with this suite (a name in eval/suites or a YAML path).")
@click.option("--runtime", type=click.Choice(["torch", "vllm"]), default=None, help="Evaluate in this runtime.")
@click.option("--limit", type=int, default=None, help="Cap every task at this many items (quick runs).")
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE",
              help="Override a recipe field, YAML-typed: --set stages[0].count=4 --set eval.latency.runs=3.")
@click.option("--record-source-path", is_flag=True,
              help="Also record the source's local path in model/compressor.json (it travels in submit.zip).")
@click.option("--log-samples", "samples_dir", type=click.Path(path_type=Path), default=None,
              help="Write every evaluation request's prompt and answer to DIR/<model|baseline>/<task>.jsonl.")
@click.option("--memory", default=None, metavar="SIZE",
              help="Memory the run may use on its device (e.g. 24GB); the plan refuses a run that needs more "
                   "(default: what the device has).")
@mlflow_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def apply(recipe_file, model_id, out_dir, force, allow_pickle, no_eval, fresh_baseline, suite, runtime, limit, overrides,
          record_source_path, samples_dir, memory, use_mlflow, mlflow_uri, as_json):
    """Apply RECIPE_FILE (a path, or a gallery name such as fp16): load, run the stages, write OUT/model,
    then evaluate and report.

    \b
    Example:
      compressor apply fp16
      compressor apply recipes/drop-layers.yaml --model ./EXAONE-4.0-1.2B --out out/drop --force
      compressor apply w8a8 --runtime torch --suite quick --set stages[0].dtype=float16
    """
    from compressor.core.sizes import parse_size
    from compressor.pipeline import apply_recipe
    from compressor.recipe import load_recipe
    from compressor.reports.report import rich_table

    import json

    flags = [f"eval.{key}={json.dumps(value)}" for key, value in (("suite", suite), ("runtime", runtime), ("limit", limit))
             if value is not None]
    recipe = load_recipe(recipe_file, [*overrides, *flags])
    budget = parse_size(memory, "--memory") if memory is not None else None
    if model_id is not None:
        if not model_id.strip():
            raise UserError("--model: an empty model id (expected builtin:NAME, a model folder, or a hub id)")
        recipe.model.id = model_id
    if allow_pickle:
        recipe.model.allow_pickle = True
    if use_mlflow:
        from compressor.tracking import require_mlflow

        require_mlflow()  # fail before the model is touched
    progress = progress_printer(not as_json)
    report = apply_recipe(recipe, str(recipe_file), out_dir=out_dir, force=force,
                          evaluate=False if no_eval else None, progress=progress,
                          fresh_baseline=fresh_baseline, samples_dir=samples_dir,
                          record_source_path=record_source_path, memory=budget)
    if use_mlflow:
        log_mlflow(report, Path(report["output"]), mlflow_uri, progress)

    def render(rep):
        console = stderr_console()
        if rep.get("eval"):
            console.print(rich_table(rep))
        console.print(f"wrote {rep['output']}/model ({rep['model']['size_mb']:.1f} MB) and report.json, "
                      f"report.md in {rep['seconds']:.1f} s")

    emit(report, as_json, render)
