"""`compressor apply RECIPE`: load, run the stages, write OUT/model, evaluate, report."""

from pathlib import Path

import click

from compressor.cli.options import log_mlflow, mlflow_options
from compressor.cli.output import emit, progress_printer, stderr_console


@click.command()
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
    from compressor.reports.report import rich_table

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
        log_mlflow(report, Path(report["output"]), mlflow_uri, progress)

    def render(rep):
        console = stderr_console()
        if rep.get("eval"):
            console.print(rich_table(rep))
        console.print(f"wrote {rep['output']}/model ({rep['model']['size_mb']:.1f} MB) and report.json, "
                      f"report.md in {rep['seconds']:.1f} s")

    emit(report, as_json, render)
