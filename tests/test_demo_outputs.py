"""The demo's outputs page: its logic (outputs_view) and its flow in Streamlit's AppTest (headless, no model)."""

import json
import os
from pathlib import Path

import pytest

from compressor.core.errors import UserError
from compressor.demo import outputs_view as view
from compressor.demo.folders import FOLDERS_ENV
from compressor.export.check_record import record_check
from compressor.reports.report import add_evaluation, markdown
from test_check_record import canned_result
from test_reports_and_tracking import fake_eval
from test_sweep_report import _document, _trial

PAGE = str(Path(__file__).resolve().parents[1] / "compressor" / "demo" / "outputs_page.py")
BROKEN_PNG = b"\x89PNG\r\n\x1a\n"  # the signature only
BASELINE = (0.5, 10.0)  # the source's (perf, tpt_ms)


def evaluated(perf: float, tpt_ms: float, baseline=BASELINE, runtime="torch") -> dict:
    """fake_eval with these measurements and the Score they make."""
    ev = fake_eval(runtime, 0.5)
    ev["model"].update(perf=perf, tpt_ms=tpt_ms)
    ev["baseline"].update(perf=baseline[0], tpt_ms=baseline[1])
    ev.update(perf_norm=perf / baseline[0], speed_norm=1 - tpt_ms / baseline[1])
    ev["score"] = round(0.5 * ev["perf_norm"] + 0.5 * ev["speed_norm"], 6)
    return ev


def make_output(folder: Path, perf: float, tpt_ms: float, baseline=BASELINE, pngs=("report.png",),
                broken_pngs=()) -> Path:
    """An output folder as `apply` + `eval` leave it (the plots as 2×2 pictures, or broken ones)."""
    from PIL import Image

    report = add_evaluation({"recipe": folder.name, "model": {"size_mb": 1.0}, "source": {"id": "s", "size_mb": 2.0},
                             "stages": [{"stage": "drop_layers", "seconds": 0.1,
                                         "result": {"dropped": [2], "scores": [0.1, 0.2]}}]},
                            evaluated(perf, tpt_ms, baseline))
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "config.json").write_text("{}")
    (folder / "report.json").write_text(json.dumps(report))
    (folder / "report.md").write_text(markdown(report))
    (folder / "recipe.yaml").write_text(f"name: {folder.name}\nstages: []\n")
    for name in pngs:
        Image.new("RGB", (2, 2)).save(folder / name)
    for name in broken_pngs:
        (folder / name).write_bytes(BROKEN_PNG)
    return folder


@pytest.fixture
def folders(tmp_path):
    """Output a (Score 0.6: on the S=0.6 line, the best Perf), output b (Score 0.5, the fastest), a sweep with a
    reported trial and a failed one, a folder that is neither and one that does not exist."""
    a = make_output(tmp_path / "a", perf=0.5, tpt_ms=8.0, pngs=("report.png", "long_context-4k.png"))
    b = make_output(tmp_path / "b", perf=0.3, tpt_ms=6.0, pngs=(), broken_pngs=("report.png",))
    sweep = tmp_path / "sweep"
    make_output(sweep / "trials" / "t1", perf=0.45, tpt_ms=7.0)
    document = _document([_trial("t1", 7.0, 0.45, 0.6), _trial("t2", 0, 0, 0, status="failed", error="boom")])
    (sweep / "sweep.json").write_text(json.dumps(document))
    (tmp_path / "plain").mkdir()
    record_check(a, canned_result("vllm", True))
    record_check(a, canned_result("transformers", False))
    return {"a": a, "b": b, "sweep": sweep, "plain": tmp_path / "plain", "missing": tmp_path / "missing"}


def test_the_table_holds_outputs_and_sweep_trials_and_names_the_bad_folders(folders):
    rows, problems = view.output_table(folders.values())
    by_name = {Path(r["output"]).name: r for r in rows}
    assert list(by_name) == ["a", "b", "t1", "t2"]
    assert by_name["a"]["check"] == "vllm: pass · transformers: FAIL" and by_name["b"]["check"] == "not checked"
    assert by_name["t1"]["status"] == "scored" and by_name["t1"]["sweep"] == str(folders["sweep"])
    assert by_name["t2"]["status"] == "failed: boom" and by_name["t2"]["score"] is None
    assert "sweep" not in by_name["a"]
    assert problems == [f"{folders['plain']}: not an output of `compressor apply` (no model/config.json) nor a sweep "
                        f"(no sweep.json)", f"{folders['missing']}: no such folder"]
    records = view.table_records(rows)
    assert list(records[0]) == ["output", "recipe", "eval", "size MB", "Perf", "ms/token", "PerfNorm", "SpeedNorm",
                                "Score", "check", "status", "sweep"]


def test_outputs_without_a_readable_report_and_broken_sweeps_are_problems_not_errors(tmp_path):
    empty = tmp_path / "empty"
    (empty / "model").mkdir(parents=True)
    (empty / "model" / "config.json").write_text("{}")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "sweep.json").write_bytes(b"\xff not json")
    malformed = make_output(tmp_path / "malformed", perf=0.5, tpt_ms=8.0)
    report = json.loads((malformed / "report.json").read_text())
    del report["evals"]["torch"]["model"]["perf"]
    (malformed / "report.json").write_text(json.dumps(report))
    good = make_output(tmp_path / "good", perf=0.5, tpt_ms=8.0)
    rows, problems = view.output_table([empty, broken, malformed, good])
    assert [Path(r["output"]).name for r in rows] == ["good"]
    assert problems[0] == f"no report.json in: {empty}"
    assert problems[1] == f"{malformed / 'report.json'}: not a report written by `compressor apply` (KeyError: 'perf')"
    assert problems[2].startswith(f"{broken / 'sweep.json'}: not a sweep document written by `compressor sweep`")


def test_sort_orders_and_unscored_rows_last(folders):
    rows, _ = view.output_table(folders.values())

    def order(by):
        return [Path(r["output"]).name for r in view.sort_rows(rows, by)]

    assert order("Score") == ["a", "t1", "b", "t2"]  # a 0.6, t1 0.6 (kept in table order), b 0.5
    assert order("Perf") == ["a", "t1", "b", "t2"]
    assert order("ms/token") == ["b", "t1", "a", "t2"]
    with pytest.raises(UserError, match="sort by 'size': expected one of Score, Perf, ms/token"):
        view.sort_rows(rows, "size")


def test_a_point_on_the_score_06_line_and_the_chart_layers(folders):
    assert view.iso_perf(0.6, 8.0, BASELINE) == pytest.approx(0.5)  # output a: Score 0.6
    assert view.iso_perf(0.5, 10.0, BASELINE) == pytest.approx(0.5)  # the source itself scores 0.5
    rows, _ = view.output_table(folders.values())
    assert view.eval_labels(rows) == ["torch"]
    chart, note = view.frontier_chart(rows, "torch")
    assert note is None
    spec = chart.to_dict()
    data = [layer["data"]["values"] for layer in spec["layer"]]
    lines = next(d for d in data if d and "score" in d[0])
    assert {"Score 0.5", "Score 0.6"} <= {p["score"] for p in lines} <= {f"Score {s:g}" for s in view.ISO_SCORES}
    start, end = [p for p in lines if p["score"] == "Score 0.6"]
    slope = (end["perf"] - start["perf"]) / (end["tpt_ms"] - start["tpt_ms"])
    assert start["perf"] + slope * (8.0 - start["tpt_ms"]) == pytest.approx(0.5)  # a lies on it
    x_domain = spec["layer"][0]["encoding"]["x"]["scale"]["domain"]
    y_domain = spec["layer"][0]["encoding"]["y"]["scale"]["domain"]
    for p in lines:  # clipped to the plotted box
        assert x_domain[0] - 1e-9 <= p["tpt_ms"] <= x_domain[1] + 1e-9
        assert y_domain[0] - 1e-9 <= p["perf"] <= y_domain[1] + 1e-9
    source = next(d for d in data if d and d[0].get("output") == "source (baseline)")
    assert (source[0]["perf"], source[0]["tpt_ms"]) == BASELINE
    points = next(d for d in data if d and "front" in d[0] and len(d) == 3)
    assert {p["output"]: p["front"] for p in points} == {"a": "Pareto front", "b": "Pareto front",
                                                         "t1": "Pareto front"}


def test_different_baselines_use_the_first_and_say_so(tmp_path):
    a = make_output(tmp_path / "a", perf=0.5, tpt_ms=8.0)
    c = make_output(tmp_path / "c", perf=0.4, tpt_ms=9.0, baseline=(0.6, 12.0))
    rows, _ = view.output_table([a, c])
    chart, note = view.frontier_chart(rows, "torch")
    assert chart is not None and "2 different baselines" in note and "a's (Perf 0.500, 10.00 ms/token)" in note
    assert view.frontier_chart(rows, "vllm") == (None, "no scored output for the evaluation vllm")


def test_report_page_lists_what_is_there_and_names_what_is_not(folders):
    page = view.report_page(folders["a"])
    assert page["problems"] == []
    assert page["markdown"].startswith("# a") and page["recipe"].startswith("name: a")
    assert [p.name for p in page["images"]] == ["report.png", "long_context-4k.png"]
    assert page["stages"] == [{"stage": "drop_layers", "seconds": 0.1, "result": '{"dropped": [2]}'}]
    assert [(c["runtime"], c["verdict"]) for c in page["checks"]] == [("vllm", "pass"), ("transformers", "FAIL")]
    (folders["b"] / "report.md").write_bytes(b"\xff\xfe")
    (folders["b"] / "recipe.yaml").unlink()
    (folders["b"] / "report.json").write_text("{")
    page = view.report_page(folders["b"])
    assert page["markdown"] is None and page["stages"] == [] and page["checks"] == []
    assert [p.split(": ")[1] for p in page["problems"]] == [
        "cannot be read (UnicodeDecodeError", "no recipe.yaml (expected the recipe `compressor apply` keeps there)",
        "not a report written by `compressor apply` (JSONDecodeError"]
    assert all("\n" not in p for p in page["problems"])


def test_extra_folders_split_on_spaces_and_pathsep():
    assert view.extra_folders(f" out/a  out/b{os.pathsep}out/c\n") == [Path("out/a"), Path("out/b"), Path("out/c")]
    assert view.extra_folders("") == []


def app(monkeypatch, *folders):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv(FOLDERS_ENV, os.pathsep.join(str(f) for f in folders))
    return AppTest.from_file(PAGE, default_timeout=30).run()


def shown_outputs(at) -> list[str]:
    return [Path(p).name for p in at.dataframe[0].value["output"]]


def test_page_flow_table_sort_chart_and_report(monkeypatch, folders):
    at = app(monkeypatch, folders["a"], folders["b"])
    assert not at.exception and not at.error and not at.warning
    assert shown_outputs(at) == ["a", "b"]
    assert list(at.dataframe[0].value.columns)[-2:] == ["check", "status"]
    chart = json.loads(at.get("vega_lite_chart")[0].proto.spec)  # the data travel inline (alt.Data values)
    assert "Score 0.6" in json.dumps(chart) and "source (baseline)" in json.dumps(chart)
    at.selectbox(key="outputs_sort").set_value("ms/token").run()
    assert not at.exception and shown_outputs(at) == ["b", "a"]
    report = at.selectbox(key="outputs_report")
    assert report.value == str(folders["a"])
    report.set_value(str(folders["b"])).run()
    assert not at.exception
    assert any(m.value.startswith("# b") for m in at.markdown)
    assert any(c.value.startswith("name: b") for c in at.code)
    assert [w.value for w in at.warning] == [f"{folders['b'] / 'report.png'}: not a readable image "
                                             f"(UnidentifiedImageError)"]  # and the rest of the page is there


def test_page_names_a_bad_folder_without_a_traceback(monkeypatch, folders):
    at = app(monkeypatch, folders["a"], folders["plain"], folders["missing"])
    assert not at.exception
    shown = [w.value for w in at.warning] + [e.value for e in at.error]
    assert any(str(folders["plain"]) in line and "not an output" in line for line in shown)
    assert any("no such folder" in line for line in shown)
    assert shown_outputs(at) == ["a"]
    at = app(monkeypatch, folders["plain"])
    assert not at.exception and at.warning and not at.dataframe


def test_page_without_folders_says_how_to_make_one_and_takes_typed_ones(monkeypatch, folders, tmp_path):
    from streamlit.testing.v1 import AppTest

    monkeypatch.delenv(FOLDERS_ENV, raising=False)
    monkeypatch.chdir(tmp_path / "plain")  # no ./out here
    at = AppTest.from_file(PAGE, default_timeout=30).run()
    assert not at.exception and "compressor apply recipes/fp16.yaml" in at.info[0].value
    at.text_input(key="outputs_more").input(f"{folders['a']} {folders['sweep']}").run()
    assert not at.exception and shown_outputs(at) == ["a", "t1", "t2"]
    assert list(at.dataframe[0].value.columns)[-1] == "sweep"
