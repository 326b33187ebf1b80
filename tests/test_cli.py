import json

import pytest
from cli_runner import run_cli




def test_user_errors_are_one_line_without_traceback(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstages:\n  - stage: drop_layers\n    count: -2\n    from: top\n")
    code, out, err = run_cli(monkeypatch, capsys, "apply", str(bad), "--out", str(tmp_path / "out"))
    assert code == 2
    assert err.strip() == f"error: {bad}: stages[0].count: Input should be greater than 0"
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_dropping_all_layers_fails_before_writing(monkeypatch, capsys, tmp_path, tiny_llama_dir):
    recipe = tmp_path / "all.yaml"
    recipe.write_text(f"name: all\nmodel: {tiny_llama_dir}\nstages:\n  - stage: drop_layers\n    count: 4\n    from: top\n")
    code, _, err = run_cli(monkeypatch, capsys, "apply", str(recipe), "--out", str(tmp_path / "out"))
    assert code == 2 and "cannot drop 4 of 4 layers" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_recipes_validate_list_and_schema(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "recipes", "validate", "recipes/fp16.yaml", "recipes/drop-layers.yaml")
    assert code == 0 and out.count(": ok") == 2
    code, out, _ = run_cli(monkeypatch, capsys, "recipes", "list")
    assert code == 0 and "fp16 " in out and "drop_layers" in out
    code, out, _ = run_cli(monkeypatch, capsys, "recipes", "schema")
    schema = json.loads(out)
    assert "stages" in schema["properties"]
    assert {"CastParams", "DropLayersParams"} <= set(schema["$defs"])


def test_apply_json_output(monkeypatch, capsys, tmp_path, tiny_llama_dir):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\nmodel: {tiny_llama_dir}\nstages:\n  - stage: cast\n    dtype: fp16\neval: {{enabled: false}}\n")
    code, out, _ = run_cli(monkeypatch, capsys, "apply", str(recipe), "--out", str(tmp_path / "o"), "--json")
    assert code == 0
    assert json.loads(out)["stages"][0]["result"] == {"dtype": "float16"}


@pytest.mark.parametrize("command", [["--help"], ["apply", "--help"], ["eval", "--help"], ["package", "--help"], ["recipes", "--help"]])
def test_help_has_examples(monkeypatch, capsys, command):
    code, out, _ = run_cli(monkeypatch, capsys, *command)
    assert code == 0 and "compressor" in out


def test_report_sorts_outputs_by_score(monkeypatch, capsys, tmp_path):
    for name, score in (("a", 0.4), ("b", 0.6)):
        (tmp_path / name).mkdir()
        ev = {"runtime": "torch", "perf_norm": 1.0, "speed_norm": 0.0, "score": score,
              "model": {"perf": 0.7, "tpt_ms": 20.0, "tasks": {}}}
        (tmp_path / name / "report.json").write_text(json.dumps({"recipe": name, "model": {"size_mb": 1.0}, "eval": ev}))
    code, out, _ = run_cli(monkeypatch, capsys, "report", str(tmp_path / "a"), str(tmp_path / "b"), "--json")
    assert code == 0 and [r["recipe"] for r in json.loads(out)["rows"]] == ["b", "a"]
    code, _, err = run_cli(monkeypatch, capsys, "report", str(tmp_path / "missing"))
    assert code == 2 and "no report.json" in err
