"""Optional MLflow tracking (`--mlflow`): one run per evaluated output, its params, metrics and reports.

The default store is a local folder, `file:./mlruns` ($MLFLOW_TRACKING_URI or `--mlflow-uri` point
elsewhere). MLflow >= 3.7 keeps that file store in maintenance mode and refuses it unless
MLFLOW_ALLOW_FILE_STORE is set; a local folder is what this tool promises, so it opts in for `file:`
URIs only. `pip install -e .[mlflow]` installs mlflow-skinny; `mlflow ui` needs the full `mlflow`.
"""

import contextlib
import os
import re
from pathlib import Path

from compressor.core.errors import UserError

DEFAULT_URI = "file:./mlruns"
EXPERIMENT = "compressor"
_UNSAFE = re.compile(r"[^\w.\- /]")  # MLflow accepts alphanumerics, _ - . space / in keys
REPORT_FILES = ("report.json", "report.md", "report.png", "recipe.yaml")


def tracking_uri(explicit: str | None = None) -> str:
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if uri.startswith("file:") and "://" not in uri:
        uri = "file:" + str(Path(uri.removeprefix("file:")).expanduser().resolve())
    return uri


def _key(*parts) -> str:
    return _UNSAFE.sub("_", ".".join(str(p) for p in parts if p != ""))[:250]


def metric_name(task: str, lm_eval_key: str) -> str:
    """'acc,none' -> 'task.acc'; 'exact_match,first-token' -> 'task.exact_match.first-token'."""
    metric, _, filter_name = lm_eval_key.partition(",")
    return _key(task, metric, "" if filter_name in ("", "none") else filter_name)


def run_params(report: dict) -> dict[str, str]:
    """What was done and how it was judged (MLflow params are strings)."""
    params = {"recipe": report.get("recipe"), "source": report.get("source", {}).get("id"),
              "source_sha256": (report.get("source", {}).get("sha256") or "")[:12],
              "num_hidden_layers": report.get("model", {}).get("num_hidden_layers")}
    for index, stage in enumerate(report.get("stages", [])):
        for name, value in stage["params"].items():
            if name != "stage":
                params[_key(f"stage{index}", stage["stage"], name)] = value
        params[_key(f"stage{index}")] = stage["stage"]
    ev = report.get("eval") or {}
    if ev:
        latency = ev["settings"]["latency"]
        params.update(runtime=ev["runtime"], device=ev["device"], suite=ev["suite"],
                      perf_definition=ev["perf_definition"], prompt_tokens=latency["prompt_tokens"],
                      new_tokens=latency["new_tokens"], timed_runs=latency["runs"],
                      batch_size=latency["batch_sizes"][0], dtype=ev["model"].get("dtype"),
                      baseline_from_cache=ev.get("baseline_from_cache"))
        press = ev["settings"].get("kv_press")
        if press:
            params.update({_key("kv_press", k): v for k, v in press.items() if v not in (None, {})})
    return {k: str(v)[:6000] for k, v in params.items() if v is not None}


def run_metrics(report: dict) -> dict[str, float]:
    """Perf, time per token, the Score terms, size, and every task metric of the model and its baseline."""
    metrics = {"size_mb": report.get("model", {}).get("size_mb")}
    ev = report.get("eval") or {}
    for key in ("perf_norm", "speed_norm", "score"):
        metrics[key] = ev.get(key)
    for who in ("model", "baseline"):
        measured = ev.get(who) or {}
        prefix = "" if who == "model" else "baseline."
        metrics[prefix + "perf"] = measured.get("perf")
        metrics[prefix + "tpt_ms"] = measured.get("tpt_ms")
        metrics[prefix + "params_m"] = measured["params"] / 1e6 if measured.get("params") else None
        for task, values in (measured.get("tasks") or {}).items():
            for name, value in values.items():
                metrics[prefix + metric_name(task, name)] = value
        for name in ("ppl", "ppl_last_half", "decode_ms_per_token", "kv_cache_mb_peak", "peak_memory_mb"):
            metrics[prefix + "long_context." + name] = (measured.get("long_context") or {}).get(name)
    metrics["seconds"] = report.get("seconds")
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def require_mlflow():
    try:
        import mlflow
    except ImportError:
        raise UserError("--mlflow needs MLflow: pip install -e '.[mlflow]' (or pip install mlflow)") from None
    return mlflow


@contextlib.contextmanager
def _experiment(uri: str | None, experiment: str):
    """MLflow pointed at `uri` and `experiment`; yields (mlflow, the resolved uri). MLflow's errors become one
    line naming the store."""
    mlflow = require_mlflow()
    uri = tracking_uri(uri)
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment(experiment)
        yield mlflow, uri
    except mlflow.exceptions.MlflowException as error:
        raise UserError(f"MLflow ({uri}): {str(error).splitlines()[0]}") from None


def log_report(report: dict, folder: Path, uri: str | None = None, experiment: str = EXPERIMENT) -> dict:
    """Log one MLflow run for `report` (files in `folder` as artifacts); returns {uri, experiment, run_id}."""
    with _experiment(uri, experiment) as (mlflow, uri):
        with mlflow.start_run(run_name=report.get("recipe")) as run:
            mlflow.log_params(run_params(report))
            mlflow.log_metrics(run_metrics(report))
            mlflow.set_tags({"output": report.get("output", ""), "compressor": "compressor"})
            for name in REPORT_FILES:
                if (Path(folder) / name).is_file():
                    mlflow.log_artifact(str(Path(folder) / name))
    return {"uri": uri, "experiment": experiment, "run_id": run.info.run_id}


def log_sweep(document: dict, reports: list[tuple[dict, Path]], uri: str | None = None,
              experiment: str = EXPERIMENT) -> dict:
    """One parent run for the sweep (its settings, the best trial's metrics, sweep.md / pareto.png) and a child
    run per evaluated trial (as `log_report` logs an output); returns {uri, experiment, run_id, children}."""
    best = next((t for t in document["trials"] if t["id"] == document.get("best")), None)
    with _experiment(uri, experiment) as (mlflow, uri):
        with mlflow.start_run(run_name=f"sweep {document['name']}") as parent:
            mlflow.log_params({k: str(document.get(k))[:6000] for k in ("base", "search", "executor", "objective",
                                                                          "constraints", "space", "set")})
            mlflow.log_metrics({"trials": len(document["trials"]), "seconds": document["seconds"],
                                **{f"best.{k}": float(v) for k, v in ((best or {}).get("metrics") or {}).items()
                                   if isinstance(v, (int, float))}})
            mlflow.set_tags({"compressor": "sweep", "best": document.get("best") or ""})
            for name in ("sweep.json", "sweep.md", "pareto.png", "best.yaml"):
                path = Path(document["folder"]) / name
                if path.is_file():
                    mlflow.log_artifact(str(path))
            children = []
            for report, folder in reports:
                with mlflow.start_run(run_name=Path(folder).name, nested=True) as child:
                    mlflow.log_params(run_params(report))
                    mlflow.log_metrics(run_metrics(report))
                    mlflow.set_tags({"output": str(folder), "compressor": "sweep-trial"})
                    children.append(child.info.run_id)
    return {"uri": uri, "experiment": experiment, "run_id": parent.info.run_id, "children": children}
