"""The first hour of a new user: flags where people reach for them, names instead of paths, write then judge,
tables that fit, nothing silent, nothing private in model/."""

import json
import os
import re

import pytest
import yaml
from rich.console import Console

from cli_runner import run_cli
from compressor.reports.report import comparison_rows, comparison_table, rich_table

QUICK = ["--suite", "quick", "--limit", "2", "--set", "eval.latency.runs=1", "--set", "eval.latency.new_tokens=2",
         "--set", "eval.latency.prompt_tokens=8", "--set", "eval.latency.warmup=0"]


def test_apply_flags_override_the_recipe(monkeypatch, capsys, tmp_path, tiny_llama_dir):
    code, out, err = run_cli(monkeypatch, capsys, "apply", "w8a8", "--model", str(tiny_llama_dir), "--out",
                             str(tmp_path / "o"), "--runtime", "torch", *QUICK, "--set", "stages[0].dtype=float16",
                             "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["eval"]["runtime"] == "torch" and report["eval"]["suite"] == "quick"
    assert report["eval"]["settings"]["limit"] == 2 and report["eval"]["settings"]["latency"]["runs"] == 1
    assert report["stages"][0]["params"]["dtype"] == "float16"
    assert yaml.safe_load((tmp_path / "o" / "recipe.yaml").read_text())["eval"]["suite"] == "quick"


def test_a_recipe_whose_runtime_is_missing_says_what_to_do(monkeypatch, capsys, tmp_path, tiny_llama_dir):
    import compressor.runtimes.vllm_runtime as vllm_runtime

    monkeypatch.setattr(vllm_runtime, "vllm_python", lambda: None)
    code, _, err = run_cli(monkeypatch, capsys, "apply", "w8a8", "--model", str(tiny_llama_dir), "--out",
                           str(tmp_path / "o"))
    assert code == 2 and "make install-vllm" in err and "--runtime torch" in err and "--no-eval" in err
    assert not (tmp_path / "o").exists()


def test_a_failed_evaluation_keeps_the_model_and_eval_finishes_it(monkeypatch, capsys, tmp_path, tiny_llama_dir):
    import compressor.pipeline as pipeline

    real = pipeline.judge

    def broken(*args, **kwargs):
        raise RuntimeError("the runtime fell over")

    monkeypatch.setattr(pipeline, "judge", broken)
    out = tmp_path / "o"
    code, _, err = run_cli(monkeypatch, capsys, "apply", "fp16", "--model", str(tiny_llama_dir), "--out", str(out),
                           *QUICK)
    assert code == 2 and "Traceback" not in err
    assert f"finish with `compressor eval {out}`" in err and "the runtime fell over" in err
    assert (out / "model" / "model.safetensors").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["evaluation"]["status"] == "incomplete" and "eval" not in report
    assert "Evaluation incomplete" in (out / "report.md").read_text()
    row = comparison_rows([out])[0]
    assert row["status"].startswith("evaluation incomplete")

    monkeypatch.setattr(pipeline, "judge", real)
    code, _, err = run_cli(monkeypatch, capsys, "eval", str(out))  # the recipe's own eval settings
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert "evaluation" not in report and report["eval"]["suite"] == "quick"
    assert report["eval"]["settings"]["latency"]["runs"] == 1 and "score" in report["eval"]


def test_gallery_recipes_and_targets_resolve_by_name_from_any_folder(monkeypatch, capsys, tmp_path, tiny_llama_dir):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(monkeypatch, capsys, "recipes", "list")
    names = [line.split()[0] for line in out.splitlines()]
    assert "fp16" in names and "w8a8" in names and not any(n.endswith(".yaml") for n in names)
    for name in names:
        assert run_cli(monkeypatch, capsys, "recipes", "validate", name)[0] == 0
    code, _, err = run_cli(monkeypatch, capsys, "apply", "fp16", "--model", str(tiny_llama_dir), "--out", "o",
                           "--no-eval")
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, "package", "o", "--target", "hf", "--json")
    assert code == 0, err and json.loads(out)["target"] == "hf"
    code, _, err = run_cli(monkeypatch, capsys, "apply", "recipes/fp16.yaml", "--no-eval")
    assert code == 2 and "found by its name from any folder: fp16" in err


def test_model_folder_records_no_local_path(monkeypatch, capsys, tmp_path, tiny_llama_dir):
    out = tmp_path / "o"
    assert run_cli(monkeypatch, capsys, "apply", "fp16", "--model", str(tiny_llama_dir), "--out", str(out),
                   "--no-eval")[0] == 0
    provenance = (out / "model" / "compressor.json").read_text()
    assert str(tiny_llama_dir) not in provenance and str(tmp_path) not in provenance
    assert json.loads(provenance)["source"] == {**json.loads(provenance)["source"], "id": tiny_llama_dir.name,
                                                "kind": "local"}
    assert "sha256" in json.loads(provenance)["source"]
    # the report beside the model keeps the path, so `compressor eval OUT` still finds the source
    assert json.loads((out / "report.json").read_text())["source"]["path"] == str(tiny_llama_dir)


def test_validation_lists_several_mistakes(monkeypatch, capsys, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "r", "stages": [{"stage": "drop_layers", "count": 0}],
                                    "eval": {"limit": 0, "batch_size": -1, "nonsense": 1}}))
    code, _, err = run_cli(monkeypatch, capsys, "recipes", "validate", str(path))
    assert code == 2 and err.count("\n") == 1
    for field in ("stages[0].count", "eval.limit", "eval.batch_size", "eval.nonsense: unknown key"):
        assert field in err


def test_evaluator_heads_beyond_the_models_heads_is_an_error(monkeypatch, capsys, tmp_path, tiny_llama_dir):
    code, _, err = run_cli(monkeypatch, capsys, "apply", "ehpc", "--model", str(tiny_llama_dir), "--out",
                           str(tmp_path / "o"), "--no-eval", "--set", "stages[0].heads=8")
    assert code == 2 and "heads 8 > the model's 4 attention heads per layer" in err
    assert not (tmp_path / "o").exists()
    code, _, err = run_cli(monkeypatch, capsys, "prompt", "discover", str(tiny_llama_dir), "--out",
                           str(tmp_path / "o"), "--heads", "5")
    assert code == 2 and "heads 5 > the model's 4" in err


def test_discovering_heads_in_a_packaged_output_warns_of_the_stale_zip(monkeypatch, capsys, tmp_path,
                                                                      tiny_llama_dir):
    out = tmp_path / "o"
    assert run_cli(monkeypatch, capsys, "apply", "fp16", "--model", str(tiny_llama_dir), "--out", str(out),
                   "--no-eval")[0] == 0
    assert run_cli(monkeypatch, capsys, "package", str(out), "--target", "hf")[0] == 0
    args = ["prompt", "discover", str(out), "--heads", "2", "--probe-tokens", "256", "--n-o", "4", "--kernel", "3"]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2 and "already packaged (submit.zip)" in err and "--force" in err
    code, out_text, err = run_cli(monkeypatch, capsys, *args, "--force", "--json")
    assert code == 0, err
    assert json.loads(out_text)["stale_zip"] == str(out / "submit.zip")


def _render(table, width: int) -> str:
    console = Console(width=width, record=True, file=open(os.devnull, "w"))
    console.print(table)
    return console.export_text()


def _flat(text: str) -> str:
    return re.sub(r"[\s│┃┏┓┗┛┡┩━─┬┴┼╇╈╋┳┻┃┣┫╭╮╰╯├┤└┘┌┐]+", "", text)


@pytest.mark.parametrize("width", [60, 80, 200])
def test_tables_fit_any_width_without_cutting_paths(width, tmp_path):
    deep = tmp_path / "a-rather-long-folder-name" / "another-level-of-folders" / "out-fp16-with-a-long-name"
    deep.mkdir(parents=True)
    report = {"recipe": "fp16-with-a-long-name", "output": str(deep), "model": {"size_mb": 12.5},
              "source": {"id": "builtin:smollm2-135m", "size_mb": 25.0},
              "eval": {"runtime": "torch", "timing": "synthetic", "perf_norm": 1.0, "speed_norm": 0.1, "score": 0.55,
                       "speed_caveat": "timed on a CPU",
                       "model": {"params": 1e6, "perf": 0.5, "tpt_ms": 10.0, "tasks": {}},
                       "baseline": {"params": 1e6, "perf": 0.5, "tpt_ms": 11.0, "tasks": {}}}}
    (deep / "report.json").write_text(json.dumps(report))
    text = _render(comparison_table(comparison_rows([deep, tmp_path / "not-an-output"])), width)
    assert "…" not in text
    assert _flat(str(deep)) in _flat(text) and "not-an-output" in _flat(text)
    assert "speedcaveat:timedonaCPU" in _flat(text)
    assert all(len(line) <= width for line in text.splitlines())
    own = _render(rich_table(report), width)
    assert "…" not in own and "fp16-with-a-long-name" in _flat(own) and "timedonaCPU" in _flat(own)
