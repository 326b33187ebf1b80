"""OUT/check.json: `compressor check` keeps its latest verdict per runtime beside the output's report."""

import json
from datetime import datetime

from cli_runner import assert_one_line_error, run_cli
from compressor.core.errors import CheckFailed
from compressor.export.check_record import read_checks, record_check


def canned_result(runtime: str, passed: bool, folder="out/model") -> dict:
    """What `check_output` returns, cut to the keys check.json and `--json` use."""
    return {"output": "out", "model": str(folder), "runtime": runtime, "passed": passed,
            "reasons": [] if passed else ["mean prefix agreement 0.25 < 0.50 (greedy tokens match the reference's "
                                          "for too short)"],
            "min_agreement": 0.5, "max_tokens": 8, "summary": {"agreement": 0.9, "prefix_agreement": 0.75 if passed
                                                                else 0.25},
            "prompts": [], "versions": {runtime: "1.0"}, "runtime_info": {"versions": {runtime: "1.0"}},
            "seconds": {"total": 1.0}}


def output_folder(tmp_path):
    out = tmp_path / "out"
    (out / "model").mkdir(parents=True)
    (out / "model" / "config.json").write_text("{}")
    return out


def test_two_runtimes_are_kept_side_by_side_and_read_back(tmp_path):
    out = output_folder(tmp_path)
    assert read_checks(out) == {}
    record_check(out, canned_result("vllm", True))
    record_check(out, {**canned_result("transformers", False), "artifact": "out/onnx/model.onnx"})
    checks = read_checks(out)
    assert list(checks) == ["vllm", "transformers"]
    assert checks["vllm"]["passed"] and checks["vllm"]["reasons"] == [] and checks["vllm"]["prefix_agreement"] == 0.75
    failed = checks["transformers"]
    assert not failed["passed"] and failed["reasons"][0].startswith("mean prefix agreement 0.25")
    assert failed["agreement"] == 0.9 and failed["min_agreement"] == 0.5
    assert failed["versions"] == {"transformers": "1.0"}
    assert failed["artifact"] == "out/onnx/model.onnx" and checks["vllm"]["artifact"] == "out/model"
    assert datetime.fromisoformat(failed["checked_at"]).utcoffset().total_seconds() == 0
    record_check(out, canned_result("vllm", False))  # a re-check replaces that runtime's verdict only
    assert [c["passed"] for c in read_checks(out).values()] == [False, False]
    assert sorted(p.name for p in out.iterdir()) == ["check.json", "model"]  # no staging file left behind


def test_an_unreadable_check_json_reads_as_no_checks(tmp_path):
    for content in (b"\xff\xfe", b"{not json", b"[1, 2]", b'{"vllm": "pass"}'):
        (tmp_path / "check.json").write_bytes(content)
        assert read_checks(tmp_path) == {}
    (tmp_path / "check.json").unlink()
    (tmp_path / "check.json").mkdir()  # a folder in the way
    assert read_checks(tmp_path) == {}
    assert read_checks(tmp_path / "missing") == {}


def test_the_check_command_records_pass_and_fail_into_an_output_only(monkeypatch, capsys, tmp_path):
    out = output_folder(tmp_path)
    verdicts = {"transformers": True, "vllm": False}
    monkeypatch.setattr("compressor.export.check.check_output",
                        lambda folder, runtime, **_: canned_result(runtime, verdicts[runtime], folder / "model"))
    code, stdout, err = run_cli(monkeypatch, capsys, "check", str(out), "--runtime", "transformers", "--json")
    assert code == 0, err
    assert json.loads(stdout)["passed"]
    code, _, err = run_cli(monkeypatch, capsys, "check", str(out), "--runtime", "vllm", "--json")
    assert_one_line_error(code, err)
    assert "fails the vllm check" in err
    checks = read_checks(out)
    assert {runtime: c["passed"] for runtime, c in checks.items()} == {"transformers": True, "vllm": False}

    def cannot_load(folder, runtime, **_):
        raise CheckFailed(f"{folder}/model/onnx/model.onnx: does not load in onnxruntime 1.0: boom")

    monkeypatch.setattr("compressor.export.check.check_output", cannot_load)
    code, _, err = run_cli(monkeypatch, capsys, "check", str(out), "--runtime", "onnxruntime")
    assert_one_line_error(code, err)
    failed = read_checks(out)["onnxruntime"]
    assert not failed["passed"] and failed["reasons"] == [err.removeprefix("error: ").strip()]
    assert len(read_checks(out)) == 3

    bare = out / "model"  # a bare model folder is never written into
    monkeypatch.setattr("compressor.export.check.check_output",
                        lambda folder, runtime, **_: canned_result(runtime, True, folder))
    code, _, err = run_cli(monkeypatch, capsys, "check", str(bare), "--runtime", "transformers", "--json")
    assert code == 0, err
    assert not (bare / "check.json").exists()
