"""A sweep's report: the Pareto front, the best trial under constraints, sweep.md, pareto.png and
`compressor report` on a sweep folder (pure Python, no model)."""

import json

import pytest
from cli_runner import assert_one_line_error, run_cli

from compressor.reports.sweep import best_trial, pareto_front, sweep_markdown, sweep_rows, write_sweep_reports

PNG = b"\x89PNG\r\n\x1a\n"


def _trial(tid, tpt, perf, score, status="done", feasible=True, error=None, **params):
    metrics = {} if status != "done" else {"tpt_ms": tpt, "perf": perf, "score": score, "perf_norm": perf / 0.5,
                                           "speed_norm": 1 - tpt / 10, "size_mb": 100.0}
    return {"id": tid, "params": params or {"stages[0].count": tid}, "status": status, "resumed": False,
            "error": error, "folder": f"trials/{tid}", "metrics": metrics, "feasible": feasible if status == "done"
            else None}


def _document(trials, objective=None, constraints=()):
    objective = objective or {"metric": "score", "direction": "maximize"}
    done = [t for t in trials if t["status"] == "done"]
    best = best_trial(trials, objective)
    return {"name": "s", "base": "recipes/drop-layers.yaml", "search": "grid", "executor": "local",
            "objective": objective, "constraints": list(constraints), "space": {}, "set": [],
            "resources": {"cpu": 2, "gpu": 0}, "baseline": {"perf": 0.5, "tpt_ms": 10.0}, "seconds": 12.3,
            "trials": trials, "best": best["id"] if best else None,
            "pareto": pareto_front([(t["id"], t["metrics"]["tpt_ms"], t["metrics"]["perf"]) for t in done])}


def test_the_pareto_front_keeps_exactly_the_non_dominated_points():
    points = [("a", 10, 0.5), ("b", 8, 0.5), ("c", 8, 0.4), ("d", 5, 0.3), ("e", 12, 0.6), ("f", 6, 0.2),
              ("g", 5, 0.3), ("h", None, 0.9), ("i", 4, float("nan"))]
    # b beats a (faster, same Perf) and c (same time, more Perf); d beats f; d and g are equal and both stay
    assert pareto_front(points) == ["d", "g", "b", "e"]
    assert pareto_front([]) == []


def test_the_front_is_the_brute_force_definition_on_random_points():
    import random

    rng = random.Random(3)
    for _ in range(50):
        points = [(str(i), rng.choice([1, 2, 3, 4]), rng.choice([0.1, 0.2, 0.3])) for i in range(8)]
        expected = {pid for pid, t, p in points
                    if not any(ot <= t and op >= p and (ot, op) != (t, p) for _, ot, op in points)}
        assert set(pareto_front(points)) == expected


def test_the_best_trial_is_feasible_finished_and_ties_go_to_the_faster():
    trials = [_trial("a", 9.0, 0.5, 0.60), _trial("b", 7.0, 0.5, 0.60), _trial("c", 5.0, 0.4, 0.90, feasible=False),
              _trial("d", 0, 0, 0, status="failed", error="boom")]
    assert best_trial(trials, {"metric": "score", "direction": "maximize"})["id"] == "b"
    assert best_trial(trials, {"metric": "tpt_ms", "direction": "minimize"})["id"] == "b"
    assert best_trial(trials[2:], {"metric": "score", "direction": "maximize"}) is None


def test_sweep_markdown_ranks_marks_and_lists_failures():
    trials = [_trial("slow", 9.0, 0.5, 0.55), _trial("fast", 5.0, 0.45, 0.70),
              _trial("bad", 0, 0, 0, status="failed", error="drop_layers: count 99 is more than the 30 layers")]
    text = sweep_markdown(_document(trials, constraints=["perf_norm >= 0.8"]))
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[1].startswith("| ★ ◆ fast") and table[2].startswith("| ◆ slow") and "| bad |" in table[3]
    assert "1 failed" in text and "2 done" in text and "constraints: perf_norm >= 0.8" in text
    assert "`bad` (stages[0].count=bad): drop_layers: count 99" in text
    assert "best.yaml" in text and "Source (baseline): Perf 0.500, 10.00 ms/token" in text
    rows = sweep_rows(_document(trials))
    assert [r["id"] for r in rows] == ["fast", "slow", "bad"] and rows[0]["best"] and rows[1]["pareto"]


def test_reports_are_written_even_when_nothing_finished(tmp_path):
    document = _document([_trial("x", 0, 0, 0, status="failed", error="no")])
    write_sweep_reports(document, tmp_path)
    assert "No trial finished" in (tmp_path / "sweep.md").read_text()
    assert (tmp_path / "pareto.png").read_bytes().startswith(PNG)
    write_sweep_reports(_document([_trial("a", 9.0, 0.5, 0.6), _trial("b", 5.0, 0.4, 0.7)]), tmp_path)
    assert (tmp_path / "pareto.png").read_bytes().startswith(PNG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pareto.png", "sweep.md"]  # no staging files left


def test_compressor_report_shows_a_sweep_folder(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / "sweep.json").write_text(json.dumps(_document([_trial("a", 9.0, 0.5, 0.6),
                                                              _trial("b", 5.0, 0.4, 0.7)])))
    code, out, err = run_cli(monkeypatch, capsys, "report", str(folder), "--json")
    assert code == 0, err
    rows = json.loads(out)["sweeps"][str(folder)]
    assert [r["id"] for r in rows] == ["b", "a"] and rows[0]["best"]
    code, _, err = run_cli(monkeypatch, capsys, "report", str(folder))
    assert code == 0 and "sweep s" in err and "★" in err
    (folder / "sweep.json").write_bytes(b"\xff\xfe not json")
    code, _, err = run_cli(monkeypatch, capsys, "report", str(folder))
    assert_one_line_error(code, err)
    assert "sweep.json: not a sweep document" in err


@pytest.mark.parametrize("direction, expected", [("maximize", "b"), ("minimize", "a")])
def test_the_objective_direction_is_honoured(direction, expected):
    trials = [_trial("a", 9.0, 0.5, 0.6), _trial("b", 5.0, 0.4, 0.7)]
    assert best_trial(trials, {"metric": "score", "direction": direction})["id"] == expected


def test_mlflow_logs_a_parent_run_and_a_child_per_trial(tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed: pip install -e '.[mlflow]'")
    from test_reports_and_tracking import fake_eval

    from compressor.reports.report import add_evaluation
    from compressor.tracking import log_sweep

    document = {**_document([_trial("a", 9.0, 0.5, 0.6), _trial("b", 5.0, 0.4, 0.7)]), "folder": str(tmp_path)}
    write_sweep_reports(document, tmp_path)
    reports = []
    for tid, score in (("a", 0.6), ("b", 0.7)):
        report = add_evaluation({"recipe": tid, "model": {"size_mb": 1.0}, "source": {"id": "s", "size_mb": 2.0},
                                 "stages": []}, fake_eval("torch", score))
        reports.append((report, tmp_path / "trials" / tid))
    uri = f"file:{tmp_path / 'mlruns'}"
    logged = log_sweep(document, reports, uri)
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    parent = client.get_run(logged["run_id"])
    assert parent.data.tags["best"] == "b" and parent.data.metrics["best.score"] == 0.7
    assert {"sweep.md", "pareto.png"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    children = [client.get_run(run_id) for run_id in logged["children"]]
    assert [c.data.tags["mlflow.parentRunId"] for c in children] == [parent.info.run_id] * 2
    assert sorted(c.data.metrics["score"] for c in children) == [0.6, 0.7]
