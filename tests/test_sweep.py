"""Sweeps: the sweep file and --grid validated before any weight is read, the plan, and real sweeps on a tiny
model (each trial a `compressor apply` process) locally and on a local Ray, resumed and interrupted."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cli_runner import assert_one_line_error, run_cli

from compressor.core.errors import UserError
from compressor.sweep.plan import grid_trials, random_trials
from compressor.sweep.spec import grid_option, load_sweep, parse_constraint
from compressor.sweep.trial import resolve_trial

EVAL = {"suite": "quick", "limit": 3, "latency": {"prompt_tokens": 16, "new_tokens": 4, "runs": 2}}


def _recipe(tmp_path: Path, model: Path) -> Path:
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "model": str(model),
                                    "stages": [{"stage": "drop_layers", "count": 1, "from": "top"}], "eval": EVAL}))
    return path


def _sweep(tmp_path: Path, **fields) -> Path:
    document = {"name": "s", "base": "fp16", "space": {"stages[0].dtype": ["float16", "bfloat16"]}, **fields}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize("fields, message", [
    ({"space": {"stages[0].colour": [1, 2]}}, r"space\.stages\[0\]\.colour = 1: .*stages\[0\]\.colour: unknown key"),
    ({"space": {"stages[5].count": [1]}}, r"space\.stages\[5\]\.count = 1: .*stages\[5\]: no such item"),
    ({"space": {"stages[0].dtype": ["float13"]}}, r"space\.stages\[0\]\.dtype = \"float13\": .*Input should be"),
    ({"space": {}}, r"sweep\.yaml: space: Dictionary should have at least 1 item"),
    ({"space": {"stages[0].dtype": []}}, r"space: .*stages\[0\]\.dtype: an empty list"),
    ({"space": {"stages[0].dtype": {"low": 2, "high": 1}}}, r"low \(2\) must be below high \(1\)"),
    ({"space": {"eval.limit": {"low": 1, "high": 9}}}, r"search: grid needs lists of values; eval\.limit is a range"),
    ({"search": "random"}, r"trials: search random needs a number of trials"),
    ({"trials": 5}, r"trials: a grid runs every combination \(2\)"),
    ({"constraints": ["perf_norm => 0.9"]}, r"constraint 'perf_norm => 0\.9': expected METRIC OP NUMBER"),
    ({"objective": {"metric": "beauty"}}, r"objective\.metric: Input should be 'score'"),
    ({"resources": {"cpu": 0}}, r"resources\.cpu: Input should be greater than 0"),
    ({"base": "no-such-recipe"}, r"no-such-recipe"),
    ({"set": ["eval.enabled=false"]}, r"eval\.enabled is false; a sweep ranks trials by their evaluation"),
    ({"colour": "red"}, r"sweep\.yaml: colour: unknown key"),
])
def test_a_bad_sweep_file_fails_in_one_line(tmp_path, fields, message):
    with pytest.raises(UserError, match=message):
        load_sweep(_sweep(tmp_path, **fields))


def test_optuna_without_optuna_installed_is_one_line(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    path = _sweep(tmp_path, search="optuna", trials=3)
    with pytest.raises(UserError, match=r"search: optuna needs Optuna: pip install -e '\.\[sweep\]'"):
        load_sweep(path)


def test_the_cli_reports_sweep_errors_in_one_line(tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "sweep", str(_sweep(tmp_path, space={"stages[0].colour": [1]})))
    assert_one_line_error(code, err)
    code, _, err = run_cli(monkeypatch, capsys, "sweep", "fp16", "--grid", "stages[0].dtype")
    assert_one_line_error(code, err)
    assert "--grid stages[0].dtype: expected PATH=V1,V2" in err
    code, _, err = run_cli(monkeypatch, capsys, "sweep", "fp16")
    assert_one_line_error(code, err)
    code, _, err = run_cli(monkeypatch, capsys, "sweep", "fp16", "--grid", "stages[0].dtype=float16",
                           "--workers", "2")
    assert_one_line_error(code, err)
    assert "--executor ray" in err
    assert not (tmp_path / "out").exists() and not Path("out/sweeps/fp16-sweep").exists()


def test_grid_option_types_values_like_yaml():
    assert grid_option("stages[0].count=2,4,6") == ("stages[0].count", [2, 4, 6])
    assert grid_option("eval.suite=quick,default") == ("eval.suite", ["quick", "default"])
    assert grid_option("stages[0].smoothquant=[0.5, 0.8]") == ("stages[0].smoothquant", [0.5, 0.8])
    assert grid_option("eval.chat_template=true,false") == ("eval.chat_template", [True, False])


def test_the_plan_is_the_product_and_random_draws_are_seeded(tmp_path):
    spec, base, _ = load_sweep(_sweep(tmp_path, space={"stages[0].dtype": ["float16", "bfloat16"],
                                                       "eval.limit": [1, 2, 3]}))
    grid = grid_trials(spec)
    assert len(grid) == 6 and {(t["stages[0].dtype"], t["eval.limit"]) for t in grid} == {(d, n) for d in ("float16", "bfloat16")
                                                                     for n in (1, 2, 3)}
    spec, _, _ = load_sweep(_sweep(tmp_path, search="random", trials=4, seed=7,
                                   space={"eval.limit": {"low": 1, "high": 50, "int": True},
                                          "eval.latency.runs": {"low": 1, "high": 100, "log": True, "int": True}}))
    drawn = random_trials(spec)
    assert drawn == random_trials(spec) and len(drawn) == 4
    assert all(1 <= t["eval.limit"] <= 50 and isinstance(t["eval.limit"], int) for t in drawn)
    few, _, _ = load_sweep(_sweep(tmp_path, search="random", trials=10))
    assert len(random_trials(few)) == 2  # the whole finite space, no duplicates


def test_a_trial_is_named_by_its_resolved_recipe(tmp_path):
    spec, base, _ = load_sweep(_sweep(tmp_path))
    a = resolve_trial(base, [], {"stages[0].dtype": "float16"})
    b = resolve_trial(base, ["stages[0].dtype=bfloat16"], {"stages[0].dtype": "float16"})
    c = resolve_trial(base, [], {"stages[0].dtype": "bfloat16"})
    assert a.id == b.id != c.id and a.recipe["stages"][0]["dtype"] == "float16"
    assert resolve_trial(base, [], {"stages[0].dtype": "float16"}, model="/elsewhere").id != a.id


def test_constraints_parse():
    constraint = parse_constraint("perf_norm >= 0.95")
    assert constraint.holds({"perf_norm": 0.96}) and not constraint.holds({"perf_norm": 0.9})
    assert constraint.holds({}) is None and str(constraint) == "perf_norm >= 0.95"


def _run(cwd: Path, *args, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compressor.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _metrics(document: dict) -> dict:
    return {t["id"]: (t["status"], t["metrics"].get("perf"), t["metrics"].get("perf_norm"),
                      t["metrics"].get("size_mb"), t["error"]) for t in document["trials"]}


@pytest.mark.e2e
def test_local_and_ray_sweeps_give_the_same_trials_and_resume(tmp_path, tiny_llama_dir):
    pytest.importorskip("ray")
    recipe = _recipe(tmp_path, tiny_llama_dir)
    grid = ["--grid", "stages[0].count=1,2,99"]  # 99 layers do not exist: that trial fails, the others finish
    local = _run(tmp_path, "sweep", str(recipe), *grid, "--out", "local", "--json")
    assert local.returncode == 0, local.stderr[-3000:]
    ray_run = _run(tmp_path, "sweep", str(recipe), *grid, "--out", "ray", "--executor", "ray", "--json")
    assert ray_run.returncode == 0, ray_run.stderr[-3000:]
    first, on_ray = json.loads(local.stdout), json.loads(ray_run.stdout)

    statuses = [t["status"] for t in first["trials"]]
    assert statuses == ["done", "done", "failed"], first["trials"]
    assert "drop_layers" in first["trials"][2]["error"] and "99" in first["trials"][2]["error"]
    assert _metrics(first) == _metrics(on_ray)  # same trials (same ids), same deterministic metrics
    assert first["best"] in {t["id"] for t in first["trials"][:2]} and first["pareto"]
    for name in ("sweep.json", "sweep.md", "pareto.png", "best.yaml"):
        assert (tmp_path / "local" / name).is_file(), name
    best = yaml.safe_load((tmp_path / "local" / "best.yaml").read_text())
    assert best["model"]["id"] == str(tiny_llama_dir) and "output" not in best
    # one baseline for the sweep: every trial read it from the cache
    for trial in first["trials"][:2]:
        report = json.loads((tmp_path / "local" / trial["folder"] / "report.json").read_text())
        assert report["eval"]["baseline_from_cache"] is True

    finished = {t["id"]: (tmp_path / "local" / t["folder"] / "report.json").stat().st_mtime_ns
                for t in first["trials"][:2]}
    again = _run(tmp_path, "sweep", str(recipe), *grid, "--out", "local", "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.loads(again.stdout)
    assert [t["resumed"] for t in resumed["trials"]] == [True, True, False]
    assert _metrics(resumed) == _metrics(first)
    assert finished == {tid: (tmp_path / "local" / "trials" / tid / "report.json").stat().st_mtime_ns
                        for tid in finished}  # the finished trials were not run again

    shown = _run(tmp_path, "report", "local")
    assert shown.returncode == 0 and first["best"] in shown.stdout + shown.stderr
    leftovers = [p for p in (tmp_path / "local" / "trials").iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers


@pytest.mark.e2e
def test_ctrl_c_stops_a_sweep_cleanly_and_a_rerun_resumes(tmp_path, tiny_llama_dir):
    recipe = _recipe(tmp_path, tiny_llama_dir)
    args = [sys.executable, "-m", "compressor.cli", "sweep", str(recipe), "--grid", "stages[0].count=1,2",
            "--out", "s"]
    # SIGINT back to its default first: a runner that starts the tests in the background (`cmd &` in a script)
    # leaves it ignored, and an ignored SIGINT is inherited, so Ctrl-C would never reach the sweep
    sweep = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    logs = tmp_path / "s" / "logs"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(logs.glob("*.log"))) < 2:  # the baseline's, then a trial's
        time.sleep(0.5)
    time.sleep(3)
    os.killpg(sweep.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    _, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 130, err[-3000:]
    assert "run the same command again to resume" in err
    trials = tmp_path / "s" / "trials"
    assert not trials.exists() or not [p for p in trials.iterdir() if p.name.startswith(".")]
    document = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert any(t["status"] != "done" for t in document["trials"])

    finished = _run(tmp_path, "sweep", str(recipe), "--grid", "stages[0].count=1,2", "--out", "s", "--json")
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert [t["status"] for t in json.loads(finished.stdout)["trials"]] == ["done", "done"]
