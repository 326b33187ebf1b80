"""Hostile recipes are normal input: one line and exit 2 for every mistake, before any weight is read. Each repro
of the reliability issue is a test here; the fuzz test draws recipes from the recipe schema with hostile values
(COMPRESSOR_FUZZ_EXAMPLES, default 300; `-m fuzz` for 3,000)."""

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from cli_runner import assert_one_line_error, run_cli
from compressor.core.errors import UserError
from hostile import hostile_yaml

FUZZ_EXAMPLES = int(os.environ.get("COMPRESSOR_FUZZ_EXAMPLES", "300"))


def _recipe(tmp_path, data, name="r.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else yaml.safe_dump(data, sort_keys=False).encode())
    return path


# -- the fuzz test ------------------------------------------------------------------------------------------

def _schema():
    from compressor.recipe import recipe_model

    return recipe_model().model_json_schema(by_alias=True)


@pytest.fixture(scope="module")
def tiny_config(tiny_llama_dir):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(tiny_llama_dir)


def _validate_everything(raw: bytes, folder: Path, config, model_dir: Path, monkeypatch, capsys) -> None:
    from compressor.recipe import check_against_config, load_recipe

    path = folder / "fuzz.yaml"
    path.write_bytes(raw)
    code, out, err = run_cli(monkeypatch, capsys, "recipes", "validate", str(path))
    if code != 0:
        assert_one_line_error(code, err)
        return
    recipe = load_recipe(path)
    recipe.model.id = str(model_dir)
    try:
        check_against_config(recipe, config, str(path), model_dir)  # the validation half of `apply`
    except UserError as error:  # one line even before the CLI joins lines; it names the recipe file first
        assert str(error).startswith(str(path)) and "\n" not in str(error), error


@settings(max_examples=FUZZ_EXAMPLES, deadline=20_000, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(raw=hostile_yaml(_schema()))
def test_hostile_recipes_get_one_line_or_pass(raw, tmp_path, tiny_llama_dir, tiny_config, monkeypatch, capsys):
    _validate_everything(raw, tmp_path, tiny_config, tiny_llama_dir, monkeypatch, capsys)


@pytest.mark.fuzz
@settings(max_examples=3000, deadline=20_000, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(raw=hostile_yaml(_schema()))
def test_hostile_recipes_many(raw, tmp_path, tiny_llama_dir, tiny_config, monkeypatch, capsys):
    _validate_everything(raw, tmp_path, tiny_config, tiny_llama_dir, monkeypatch, capsys)


# -- recipes that must be refused before any weight -------------------------------------------------------

@pytest.mark.parametrize("data, message", [
    ({"name": "x", "stages": [{"stage": "drop_layers", "layers": [0, -4]}]}, "names the same layer twice"),
    ({"name": "x", "eval": {"long_context": {"vary": {"window": [float("inf")]}}, "kv_press": {
        "press": "streaming_llm", "window": 8}}}, "eval.long_context.vary.window[0]"),
    ({"name": "x", "stages": [{"stage": "heal", "lr": float("inf")}]}, "stages[0].lr"),
    ({"name": "x", "stages": [{"stage": "quantize", "scheme": "w8a8-int8", "method": "gptq",
                               "dampening": float("inf")}]}, "stages[0].dampening"),
    ({"name": "x", "stages": [{"stage": "drop_layers", "count": 1, "by": "angular",
                               "calibration": {"seq_len": 1e30}}]}, "calibration.seq_len"),
    ({"name": "x", "stages": [{"stage": "drop_layers", "count": 1, "by": "angular",
                               "calibration": {"seq_len": 4096}}]}, "seq_len: 4096 > the model's 2048 positions"),
    ({"name": "x", "eval": {"latency": {"batch_sizes": [0]}}}, "eval.latency.batch_sizes[0]"),
    ({"name": "x", "eval": {"latency": {"prompt_tokens": 2000, "new_tokens": 100}}},
     "prompt_tokens + new_tokens = 2100 > the model's 2048 positions"),
    ({"name": "x", "model": {"device": "mps"}}, "no MPS"),
    ({"name": "x", "stages": [{"stage": "heal", "seed": 2**70}]}, "stages[0].seed"),
])
def test_bad_recipes_fail_in_one_line_before_any_work(monkeypatch, capsys, tmp_path, tiny_llama_dir, data, message):
    out = tmp_path / "out"
    code, _, err = run_cli(monkeypatch, capsys, "apply", str(_recipe(tmp_path, data)), "--model", str(tiny_llama_dir),
                           "--out", str(out), "--suite", "quick", "--limit", "1")  # eval on: its settings are checked
    assert_one_line_error(code, err)
    assert message in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.parametrize("raw, message", [
    (b"name: caf\xe9\nstages: []\n", "not UTF-8 text"),
    (b"name: x\nstages:\n  - stage: cast\n    stage: cast\n    dtype: float16\n", "duplicate key 'stage'"),
    (b"name: x\nname: y\n", "duplicate key 'name'"),
    (b"name: " + b"[" * 5000, "nested too deeply"),
    (b"name: x\nstages: []\nseed: " + b"9" * 5000 + b"\n", "invalid YAML"),
    (b"name: x\nstages: !!python/object/apply:os.system ['true']\n", "could not determine a constructor"),
    (b"\x00name: x\n", "special characters are not allowed (character 0)"),
    (b'name: x\nstages: []\n"a\\nb": 1\n', "'a\\nb': unknown key"),
])
def test_bad_recipe_bytes_are_one_line(monkeypatch, capsys, tmp_path, raw, message):
    code, _, err = run_cli(monkeypatch, capsys, "recipes", "validate", str(_recipe(tmp_path, raw)))
    assert_one_line_error(code, err)
    assert message in err
    with pytest.raises(UserError) as raised:  # the message itself is one line (for callers of the API too)
        from compressor.recipe import load_recipe

        load_recipe(_recipe(tmp_path, raw))
    assert "\n" not in str(raised.value)


def test_recipe_paths_that_are_not_recipe_files(monkeypatch, capsys, tmp_path):
    os.mkfifo(tmp_path / "fifo")
    for path, message in ((tmp_path, "a folder, not a recipe file"), (tmp_path / "fifo", "not a regular file"),
                          (Path("/dev/zero"), "not a regular file"), (tmp_path / ("x" * 5000), "not a usable recipe path")):
        code, _, err = run_cli(monkeypatch, capsys, "recipes", "validate", str(path))
        assert_one_line_error(code, err)
        assert message in err and len(err) < 800


def test_suites_that_are_not_suites(monkeypatch, capsys, tmp_path, tiny_llama_dir):
    for content, message in ((b"name: [", "invalid YAML"), (b"- a\n- b\n", "expected a mapping"),
                             (b"name: s\ntasks: [{task: minimal_pairs, metric: acc}]\ntasks: []\n", "duplicate key")):
        suite = tmp_path / "s.yaml"
        suite.write_bytes(content)
        data = {"name": "x", "eval": {"suite": str(suite)}}
        code, _, err = run_cli(monkeypatch, capsys, "apply", str(_recipe(tmp_path, data)), "--model",
                               str(tiny_llama_dir), "--out", str(tmp_path / "o"))
        assert_one_line_error(code, err)
        assert message in err and not (tmp_path / "o").exists()
    data = {"name": "x", "eval": {"suite": "s\nt.yaml"}}  # a newline in a name the error quotes
    code, _, err = run_cli(monkeypatch, capsys, "apply", str(_recipe(tmp_path, data)), "--model",
                           str(tiny_llama_dir), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err)
    assert "'s\\nt.yaml': no such suite" in err
