"""Evaluations recorded beside each other in report.json, `compressor report` rows, MLflow tracking."""

import json
import sys

import pytest
import yaml

from cli_runner import run_cli
from compressor.reports.report import add_evaluation, comparison_rows, eval_label, evaluations, markdown
from compressor.tracking import metric_name, run_metrics, run_params

FAST = ["--limit", "2", "--prompt-tokens", "8", "--new-tokens", "2", "--runs", "1"]


def fake_eval(runtime: str, score: float, press: dict | None = None) -> dict:
    latency = {"tpt_ms_median": 10.0, "tpt_ms_min": 9.0, "tpt_ms_max": 11.0, "tpt_ms_runs": [10.0]}
    return {"runtime": runtime, "device": "cpu", "suite": "quick", "perf_definition": "1·minimal_pairs.acc / 1",
            "settings": {"latency": {"prompt_tokens": 8, "new_tokens": 2, "runs": 1, "batch_sizes": [1]},
                         **({"kv_press": press} if press else {})},
            "perf_norm": 1.0, "speed_norm": 2 * score - 1.0, "score": score,
            "model": {"perf": 0.7, "tpt_ms": 10.0, "params": 2e6, "latency": {"1": latency},
                      "tasks": {"minimal_pairs": {"acc,none": 0.7}}},
            "baseline": {"perf": 0.7, "tpt_ms": 10.0, "params": 3e6, "latency": {"1": latency},
                         "tasks": {"minimal_pairs": {"acc,none": 0.7}}}}


def test_evaluations_are_kept_by_label_and_the_latest_is_eval():
    report = {"recipe": "r", "model": {"size_mb": 1.0}, "source": {"id": "s", "size_mb": 2.0}}
    report = add_evaluation(report, fake_eval("torch", 0.5))
    report = add_evaluation(report, fake_eval("vllm", 0.6))
    report = add_evaluation(report, fake_eval("torch", 0.55, press={"press": "snapkv", "ratio": 0.5}))
    assert list(report["evals"]) == ["torch", "vllm", "torch+snapkv@0.5"]
    assert report["eval"]["score"] == 0.55
    report = add_evaluation(report, fake_eval("torch", 0.45))  # re-evaluating replaces that label only
    assert report["evals"]["torch"]["score"] == 0.45 and len(report["evals"]) == 3
    text = markdown(report)
    assert text.count("## Evaluation: ") == 3 and "Runtime vllm" in text
    assert evaluations({"eval": fake_eval("vllm", 0.6)}) == {"vllm": fake_eval("vllm", 0.6)}  # older reports
    assert eval_label(fake_eval("torch", 0.5, press={"press": "none", "ratio": 0.0})) == "torch"


def test_report_rows_per_output_and_evaluation(tmp_path):
    for name, scores in (("a", {"torch": 0.4, "vllm": 0.7}), ("b", {"torch": 0.6})):
        report = {"recipe": name, "model": {"size_mb": 1.0}, "source": {"id": "s"}}
        for runtime, score in scores.items():
            report = add_evaluation(report, fake_eval(runtime, score))
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(report))
    rows = comparison_rows([tmp_path / "a", tmp_path / "b"])
    assert [(r["recipe"], r["eval"], r["score"]) for r in rows] == [("a", "vllm", 0.7), ("b", "torch", 0.6),
                                                                    ("a", "torch", 0.4)]


@pytest.fixture(scope="module")
def applied(tmp_path_factory, tiny_llama_dir):
    """A tiny drop-layers output written by `apply --no-eval`, and a one-task suite."""
    folder = tmp_path_factory.mktemp("reports")
    suite = folder / "mc.yaml"
    suite.write_text(yaml.safe_dump({"name": "mc", "tasks": [{"task": "minimal_pairs", "metric": "acc"}]}))
    recipe = folder / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "dropped", "model": str(tiny_llama_dir),
                                      "stages": [{"stage": "drop_layers", "count": 1, "from": "top"}],
                                      "eval": {"enabled": False}}))
    return folder, recipe, suite


def test_eval_command_records_into_the_output_report(monkeypatch, capsys, applied, tmp_path):
    folder, recipe, suite = applied
    out = tmp_path / "out"
    code, _, err = run_cli(monkeypatch, capsys, "apply", str(recipe), "--out", str(out))
    assert code == 0, err
    code, stdout, err = run_cli(monkeypatch, capsys, "eval", str(out), "--suite", str(suite), *FAST, "--json")
    assert code == 0, err
    saved = json.loads((out / "report.json").read_text())
    assert saved["stages"][0]["stage"] == "drop_layers"  # what apply wrote stays
    assert list(saved["evals"]) == ["torch"] and saved["eval"]["score"] == json.loads(stdout)["eval"]["score"]
    assert (out / "report.png").is_file() and "## Evaluation" not in (out / "report.md").read_text()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    code, stdout, _ = run_cli(monkeypatch, capsys, "report", str(out), "--json")
    assert code == 0 and json.loads(stdout)["rows"][0]["eval"] == "torch"


def test_eval_of_a_bare_model_folder_writes_nothing_into_it(monkeypatch, capsys, tiny_llama_dir, applied):
    _, _, suite = applied
    before = sorted(p.name for p in tiny_llama_dir.iterdir())
    code, _, err = run_cli(monkeypatch, capsys, "eval", str(tiny_llama_dir), "--no-baseline", "--suite", str(suite),
                           *FAST, "--json")
    assert code == 0, err
    assert sorted(p.name for p in tiny_llama_dir.iterdir()) == before


def test_metric_names_params_and_metrics_are_mlflow_safe():
    assert metric_name("minimal_pairs", "acc,none") == "minimal_pairs.acc"
    assert metric_name("retrieval", "exact_match,first-token") == "retrieval.exact_match.first-token"
    report = {"recipe": "r", "source": {"id": "builtin:x", "sha256": "ab" * 32}, "model": {"size_mb": 3.5},
              "stages": [{"stage": "cast", "params": {"stage": "cast", "dtype": "fp16"}}], "eval": fake_eval("torch", 0.6)}
    params = run_params(report)
    assert params["stage0"] == "cast" and params["stage0.cast.dtype"] == "fp16" and params["runtime"] == "torch"
    metrics = run_metrics(report)
    assert metrics["score"] == 0.6 and metrics["minimal_pairs.acc"] == 0.7 and metrics["baseline.params_m"] == 3.0
    assert all(isinstance(v, float) for v in metrics.values())


def test_mlflow_logs_one_run_per_evaluated_apply(monkeypatch, capsys, applied, tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed: pip install -e '.[mlflow]'")
    _, recipe, suite = applied
    data = yaml.safe_load(recipe.read_text())
    data["eval"] = {"suite": str(suite), "limit": 2, "latency": {"prompt_tokens": 8, "new_tokens": 2, "runs": 1}}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(data))
    uri = f"file:{tmp_path / 'mlruns'}"
    code, stdout, err = run_cli(monkeypatch, capsys, "apply", str(recipe), "--out", str(tmp_path / "out"),
                                "--mlflow", "--mlflow-uri", uri, "--json")
    assert code == 0, err
    report = json.loads(stdout)
    run = mlflow.tracking.MlflowClient(tracking_uri=uri).get_run(report["mlflow"]["run_id"])
    assert run.data.metrics["score"] == pytest.approx(report["eval"]["score"])
    assert run.data.metrics["minimal_pairs.acc"] == pytest.approx(report["eval"]["model"]["tasks"]["minimal_pairs"]["acc,none"])
    assert run.data.params["stage0.drop_layers.count"] == "1" and run.data.params["runtime"] == "torch"
    artifacts = {a.path for a in mlflow.tracking.MlflowClient(tracking_uri=uri).list_artifacts(run.info.run_id)}
    assert {"report.json", "report.md", "recipe.yaml"} <= artifacts


def test_mlflow_missing_is_a_one_line_error_before_any_work(monkeypatch, capsys, applied, tmp_path):
    _, recipe, _ = applied
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    code, _, err = run_cli(monkeypatch, capsys, "apply", str(recipe), "--out", str(tmp_path / "out"), "--mlflow")
    assert code == 2 and err.strip() == "error: --mlflow needs MLflow: pip install -e '.[mlflow]' (or pip install mlflow)"
    assert not (tmp_path / "out").exists()
