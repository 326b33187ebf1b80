"""`compressor sweep SWEEP.yaml` (or `RECIPE --grid PATH=V1,V2`): many trials from one base recipe, ranked."""

from pathlib import Path

import click

from compressor.cli.options import mlflow_options
from compressor.cli.output import emit, progress_printer, stderr_console
from compressor.core.errors import UserError


@click.command()
@click.argument("sweep_or_recipe")
@click.option("--grid", "grid", multiple=True, metavar="PATH=V1,V2,...",
              help="With a recipe instead of a sweep file: the values to try, e.g. --grid stages[0].count=2,4,6.")
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE",
              help="Fix a recipe field for every trial, YAML-typed: --set eval.suite=quick.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Sweep folder (default out/sweeps/<name>); a re-run into it resumes.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: one trial after another; ray: Ray Tune, trials side by side.")
@click.option("--address", default=None, help="A running Ray cluster (default: a local Ray for this run).")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Trials at a time on Ray (default: as many as the resources allow).")
@click.option("--model", "model_id", default=None, help="Override the base recipe's model.")
@click.option("--fresh", is_flag=True, help="Re-run every trial, even those already complete.")
@mlflow_options
@click.option("--json", "as_json", is_flag=True, help="Print sweep.json on stdout.")
def sweep(sweep_or_recipe, grid, overrides, out_dir, executor, address, workers, model_id, fresh, use_mlflow,
          mlflow_uri, as_json):
    """Try many recipes from one base and rank them by Score: a sweep file (sweeps/*.yaml: base, space,
    search grid | random | optuna, trials, objective, constraints, resources), or a recipe with --grid.

    Each trial is applied and evaluated in its own process, in SWEEP/trials/<hash of the recipe>; the source
    is evaluated once. Writes sweep.json, sweep.md, pareto.png and best.yaml; a re-run skips finished trials.

    \b
    Example:
      compressor sweep sweeps/drop-w8a8.yaml --executor ray
      compressor sweep drop-layers --grid stages[0].count=2,4,6 --set eval.suite=quick
      compressor report out/sweeps/drop-w8a8
    """
    from compressor.reports.sweep import sweep_table
    from compressor.sweep.run import run_sweep

    spec, base, base_source = _sweep_spec(sweep_or_recipe, grid, overrides)
    if model_id is not None and not model_id.strip():
        raise UserError("--model: an empty model id (expected builtin:NAME, a model folder, or a hub id)")
    if executor == "local" and (address or workers):
        raise UserError("--address / --workers: these are for --executor ray")
    if executor == "ray":
        from compressor.sweep.ray_executor import require_ray

        require_ray()  # before any trial
    if use_mlflow:
        from compressor.tracking import require_mlflow

        require_mlflow()
    root = out_dir or Path("out") / "sweeps" / spec.name
    progress = progress_printer(not as_json)
    document = run_sweep(spec, base, base_source, root, executor, address, workers, fresh, model_id, progress)
    if use_mlflow:
        _log_mlflow(document, root, mlflow_uri, progress)

    def render(doc):
        console = stderr_console()
        console.print(sweep_table(doc))
        console.print(f"wrote {root}/sweep.json, sweep.md, pareto.png" + (", best.yaml" if doc["best"] else ""))

    emit(document, as_json, render)


def _sweep_spec(sweep_or_recipe: str, grid: tuple, overrides: tuple):
    from compressor.sweep.spec import base_recipe_data, check_space, grid_option, load_sweep, parse_sweep

    if not grid:
        path = Path(sweep_or_recipe)
        if not path.is_file():
            raise UserError(f"{sweep_or_recipe}: no such sweep file (give a sweep file, or a recipe with "
                            "--grid PATH=V1,V2,...)")
        return load_sweep(path, overrides)
    base, source = base_recipe_data(sweep_or_recipe, None)
    space = dict(grid_option(text) for text in grid)
    name = f"{Path(sweep_or_recipe).stem}-sweep"
    spec = parse_sweep({"name": name, "base": sweep_or_recipe, "set": list(overrides), "space": space},
                       "--grid")
    check_space(spec, base, source)
    return spec, base, source


def _log_mlflow(document: dict, root: Path, uri: str | None, progress) -> None:
    from compressor.sweep.trial import read_report, trial_folder
    from compressor.tracking import log_sweep

    reports = [(read_report(trial_folder(root, t["id"])), trial_folder(root, t["id"]))
               for t in document["trials"] if t["status"] == "done"]
    logged = log_sweep({**document, "folder": str(root)}, reports, uri)
    document["mlflow"] = logged
    progress(f"MLflow: sweep run {logged['run_id']} with {len(logged['children'])} trial runs in {logged['uri']}")


@click.command(name="sweep-baseline", hidden=True)
@click.argument("recipe_file", type=click.Path(exists=True, dir_okay=False))
def sweep_baseline(recipe_file):
    """(Run by `compressor sweep`.) Measure RECIPE_FILE's source into the baseline cache."""
    from compressor.sweep.baseline import measure_baseline

    measure_baseline(recipe_file)
