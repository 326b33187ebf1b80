"""Options several commands share (evaluation settings, KV presses, MLflow), and building an EvalSpec from them."""

from pathlib import Path

import click

from compressor.core.errors import UserError
from compressor.evaluate.kv.spec import PRESS_NAMES


def mlflow_options(fn):
    """--mlflow / --mlflow-uri: log the evaluated report as an MLflow run (optional dependency)."""
    fn = click.option("--mlflow-uri", default=None, metavar="URI",
                      help="Tracking URI (default $MLFLOW_TRACKING_URI, else the local store file:./mlruns).")(fn)
    return click.option("--mlflow", "use_mlflow", is_flag=True,
                        help="Log params, metrics and report files as an MLflow run.")(fn)


def log_mlflow(report: dict, folder: Path, uri: str | None, progress) -> None:
    from compressor.tracking import log_report

    logged = log_report(report, folder, uri)
    report["mlflow"] = logged
    progress(f"MLflow run {logged['run_id']} in {logged['uri']} (experiment {logged['experiment']})")


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
        click.option("--batch-sizes", default="1", show_default=True,
                     help="Comma-separated synthetic timing batch sizes; the first is scored under synthetic timing."),
        click.option("--timing", type=click.Choice(["workload", "synthetic"]), default=None,
                     help="Time per token for the Score: the suite's batched generation (workload, what the "
                          "lg-aimers server times) or a fixed prompt (synthetic). Default: the suite's."),
        click.option("--chat-template/--no-chat-template", "chat_template", default=None,
                     help="Generative tasks through the model's chat template (default: the suite's setting)."),
        click.option("--max-gen-toks", type=int, default=None, help="Cap on every generative task's tokens."),
        click.option("--target", "target_name", default=None, metavar="TARGET",
                     help="Take the evaluation settings of a deployment target (e.g. lg-aimers: its suite, "
                          "runtime, chat template, timing, engine); options given here override them."),
        click.option("--log-samples", "samples_dir", type=click.Path(path_type=Path), default=None,
                     help="Write every request's prompt and answer to DIR/<model|baseline>/<task>.jsonl."),
        click.option("--eager", is_flag=True, default=False,
                     help="vLLM: start the engine without compiling its graphs (enforce_eager): a faster start, "
                          "slower steps, so its times are not the served engine's."),
    ]):
        fn = option(fn)
    return fn


def press_options(fn):
    """--kv-press and its parameters (torch runtime), shared by `eval` and `bench`."""
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


def explicit_options() -> set[str]:
    """The parameters of the running command that were given on the command line (not defaults)."""
    ctx = click.get_current_context()
    return {name for name in ctx.params if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}


def target_eval_settings(target_name: str | None) -> dict:
    """The evaluation settings a target states (with `target`: its name), or {} without a target."""
    if target_name is None:
        return {}
    from compressor.export.targets import eval_profile, load_target

    target = load_target(target_name)
    return {**eval_profile(target).eval_settings(), "target": target.name}


def recipe_eval_settings(output_dir: Path) -> dict:
    """The `eval:` block of OUTPUT_DIR/recipe.yaml (what `apply` judged with), or {} when there is none."""
    from compressor.core.layout import RECIPE_FILE, is_output
    from compressor.core.yaml_io import read_yaml_file

    path = Path(output_dir) / RECIPE_FILE
    if not (is_output(output_dir) and path.is_file()):
        return {}
    data = read_yaml_file(path, "recipe")
    settings = dict((data or {}).get("eval") or {}) if isinstance(data, dict) else {}
    settings.pop("enabled", None)
    return settings


LATENCY_OPTIONS = ("prompt_tokens", "new_tokens", "runs", "warmup", "batch_sizes")
PRESS_OPTIONS = ("kv_press", "kv_ratio", "n_sink", "window")
LONG_OPTIONS = ("long_context", "chunk")


def eval_spec_from_options(baseline: bool, runtime, suite, limit, batch_size, prompt_tokens, new_tokens, runs,
                           batch_sizes, warmup=1, kv_press=None, kv_ratio=0.0, n_sink=None, window=None,
                           long_context=None, chunk=None, timing=None, chat_template=None, max_gen_toks=None,
                           eager=False, layers: tuple[dict, ...] = (), explicit: set[str] | None = None):
    """An EvalSpec from command-line values over `layers` of settings (e.g. the recipe's eval, then a target's).

    With `explicit` (the options given on the command line), only those override the layers; without it every
    value counts (the command's defaults are then the settings)."""
    from pydantic import ValidationError

    from compressor.core.validation import format_validation_error
    from compressor.evaluate.spec import EvalSpec

    given = (lambda name: True) if explicit is None else (lambda name: name in explicit)
    try:
        fields = {name: value for name, value in (("runtime", runtime), ("suite", suite), ("limit", limit),
                                                  ("batch_size", batch_size), ("timing", timing),
                                                  ("chat_template", chat_template), ("max_gen_toks", max_gen_toks))
                  if given(name)}
        latency = {"prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "runs": runs, "warmup": warmup,
                   "batch_sizes": [int(b) for b in str(batch_sizes).split(",")]}
        latency = {k: v for k, v in latency.items() if given(k)}
        if any(given(o) for o in PRESS_OPTIONS) and (kv_press is not None or window is not None
                                                      or n_sink is not None or kv_ratio):
            fields["kv_press"] = {"press": kv_press or "none", "ratio": kv_ratio, "n_sink": n_sink, "window": window}
        if any(given(o) for o in LONG_OPTIONS) and (long_context is not None or chunk is not None):
            fields["long_context"] = {k: v for k, v in (("tokens", long_context), ("chunk", chunk)) if v is not None}
        merged: dict = {}
        for layer in (*layers, fields):
            merged.update({k: v for k, v in layer.items() if k != "latency"})
            merged["latency"] = {**merged.get("latency", {}), **layer.get("latency", {})}
        merged["latency"].update(latency)
        if eager and given("eager"):
            merged["engine"] = {**(merged.get("engine") or {}), "enforce_eager": True}
        merged["baseline"] = baseline
        return EvalSpec(**merged)
    except (ValidationError, ValueError) as error:
        message = format_validation_error("options", error) if isinstance(error, ValidationError) else str(error)
        raise UserError(message) from None
