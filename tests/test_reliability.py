"""Hostile input is normal input: one line and a non-zero exit for every user error, no silent bad output,
nothing left behind or leaked. Each repro of the reliability issue is a test here; the fuzz test draws recipes
from the recipe schema with hostile values (COMPRESSOR_FUZZ_EXAMPLES, default 300; `-m fuzz` for 3,000)."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from cli_runner import run_cli
from compressor.core.errors import UserError
from compressor.models.sources import content_hash
from compressor.models.tiny import save_tiny
from hostile import hostile_yaml

FUZZ_EXAMPLES = int(os.environ.get("COMPRESSOR_FUZZ_EXAMPLES", "300"))


def _one_line_error(code: int, err: str) -> None:
    err = "".join(line for line in err.splitlines(keepends=True) if not line.startswith("• "))  # progress lines
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "internal error" not in err, err


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
        _one_line_error(code, err)
        return
    recipe = load_recipe(path)
    recipe.model.id = str(model_dir)
    try:
        check_against_config(recipe, config, str(path), model_dir)  # the validation half of `apply`
    except UserError as error:  # the CLI prints it as one line; it names the recipe file first
        assert str(error).startswith(str(path)), error


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
    _one_line_error(code, err)
    assert message in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.parametrize("raw, message", [
    (b"name: caf\xe9\nstages: []\n", "not UTF-8 text"),
    (b"name: x\nstages:\n  - stage: cast\n    stage: cast\n    dtype: float16\n", "duplicate key 'stage'"),
    (b"name: x\nname: y\n", "duplicate key 'name'"),
    (b"name: " + b"[" * 5000, "nested too deeply"),
    (b"name: x\nstages: []\nseed: " + b"9" * 5000 + b"\n", "invalid YAML"),
    (b"name: x\nstages: !!python/object/apply:os.system ['true']\n", "could not determine a constructor"),
])
def test_bad_recipe_bytes_are_one_line(monkeypatch, capsys, tmp_path, raw, message):
    code, _, err = run_cli(monkeypatch, capsys, "recipes", "validate", str(_recipe(tmp_path, raw)))
    _one_line_error(code, err)
    assert message in err


def test_recipe_paths_that_are_not_recipe_files(monkeypatch, capsys, tmp_path):
    os.mkfifo(tmp_path / "fifo")
    for path, message in ((tmp_path, "a folder, not a recipe file"), (tmp_path / "fifo", "not a regular file"),
                          (Path("/dev/zero"), "not a regular file"), (tmp_path / ("x" * 5000), "not a usable recipe path")):
        code, _, err = run_cli(monkeypatch, capsys, "recipes", "validate", str(path))
        _one_line_error(code, err)
        assert message in err and len(err) < 800


def test_suites_that_are_not_suites(monkeypatch, capsys, tmp_path, tiny_llama_dir):
    for content, message in ((b"name: [", "invalid YAML"), (b"- a\n- b\n", "expected a mapping"),
                             (b"name: s\ntasks: [{task: minimal_pairs, metric: acc}]\ntasks: []\n", "duplicate key")):
        suite = tmp_path / "s.yaml"
        suite.write_bytes(content)
        data = {"name": "x", "eval": {"suite": str(suite)}}
        code, _, err = run_cli(monkeypatch, capsys, "apply", str(_recipe(tmp_path, data)), "--model",
                               str(tiny_llama_dir), "--out", str(tmp_path / "o"))
        _one_line_error(code, err)
        assert message in err and not (tmp_path / "o").exists()


# -- model folders -------------------------------------------------------------------------------------------

def _copy_tiny(tiny_llama_dir, tmp_path, name="m") -> Path:
    import shutil

    return Path(shutil.copytree(tiny_llama_dir, tmp_path / name))


@pytest.mark.parametrize("damage, message", [
    (lambda m: (m / "config.json").write_text("{not json"), "config.json: invalid JSON"),
    (lambda m: (m / "config.json").write_text("[1, 2]"), "expected a JSON object, got list"),
    (lambda m: (m / "config.json").write_text("{}"), "no model_type"),
    (lambda m: _edit_config(m, num_hidden_layers=-1), "num_hidden_layers must be a positive integer"),
    (lambda m: _edit_config(m, num_attention_heads=3), "num_attention_heads 3 is not a multiple of"),
    (lambda m: _edit_config(m, num_hidden_layers=6), "the weights hold decoder layers 4 (0..3)"),
    (lambda m: _edit_config(m, model_type="mystery", auto_map={"AutoConfig": "x.Config"}),
     "model_type 'mystery' is not supported"),
    (lambda m: _truncate(m / "model.safetensors"), "truncated"),
    (lambda m: (m / "model.safetensors").write_bytes(b""), "not a readable safetensors file"),
    (lambda m: (m / "model.safetensors").unlink(), "no weights (*.safetensors)"),
])
def test_bad_model_folders_are_refused_before_editing(monkeypatch, capsys, tmp_path, tiny_llama_dir, damage, message):
    model = _copy_tiny(tiny_llama_dir, tmp_path)
    damage(model)
    before = sorted((p.name, p.read_bytes()) for p in model.iterdir())
    for args in (["apply", "fp16", "--model", str(model), "--out", str(tmp_path / "o"), "--no-eval"],
                 ["eval", str(model), "--no-baseline"], ["bench", str(model)],
                 ["check", str(model), "--runtime", "transformers"]):
        code, _, err = run_cli(monkeypatch, capsys, *args)
        _one_line_error(code, err)
        assert message in err, (args, err)
    assert not (tmp_path / "o").exists()
    assert sorted((p.name, p.read_bytes()) for p in model.iterdir()) == before  # the source is never modified


def _edit_config(model: Path, **values) -> None:
    config = json.loads((model / "config.json").read_text())
    config.update(values)
    (model / "config.json").write_text(json.dumps(config))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])


def test_an_empty_folder_name_guess_is_not_used(monkeypatch, capsys, tmp_path, tiny_llama_dir):
    model = _copy_tiny(tiny_llama_dir, tmp_path, "emptyjson")
    (model / "config.json").write_text("")
    code, _, err = run_cli(monkeypatch, capsys, "apply", "fp16", "--model", str(model), "--no-eval")
    _one_line_error(code, err)
    assert "invalid JSON" in err and "'mpt'" not in err


def test_an_empty_model_id_is_an_error(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "apply", "fp16", "--model", "", "--out", str(tmp_path / "o"))
    _one_line_error(code, err)
    assert "empty model id" in err


def test_pickled_weights_need_an_explicit_opt_in(monkeypatch, capsys, tmp_path):
    from compressor.models.tiny import byte_tokenizer, tiny_llama_config, tiny_model

    model = tmp_path / "pickled"
    tiny_model(tiny_llama_config()).save_pretrained(model, safe_serialization=False)
    byte_tokenizer().save_pretrained(model)
    assert (model / "pytorch_model.bin").is_file() and not list(model.glob("*.safetensors"))
    code, _, err = run_cli(monkeypatch, capsys, "apply", "fp16", "--model", str(model), "--out", str(tmp_path / "o"),
                           "--no-eval")
    _one_line_error(code, err)
    assert "--allow-pickle" in err
    code, _, err = run_cli(monkeypatch, capsys, "apply", "fp16", "--model", str(model), "--out", str(tmp_path / "o"),
                           "--no-eval", "--allow-pickle")
    assert code == 0, err
    assert (tmp_path / "o" / "model" / "model.safetensors").is_file()


# -- packaging ----------------------------------------------------------------------------------------------

@pytest.fixture
def written(monkeypatch, capsys, tmp_path, tiny_llama_dir):
    out = tmp_path / "out"
    assert run_cli(monkeypatch, capsys, "apply", "fp16", "--model", str(tiny_llama_dir), "--out", str(out),
                   "--no-eval")[0] == 0
    return out


def test_package_ships_only_model_files_inside_the_folder(monkeypatch, capsys, tmp_path, written):
    secret = tmp_path / "secret.txt"
    secret.write_text("the host's secret")
    model = written / "model"
    (model / "notes.txt").symlink_to(secret)
    (model / "run.sh").write_text("rm -rf /")
    (model / "blob.bin").write_bytes(b"\0" * 10)
    (model / "sub").mkdir()
    (model / os.fsdecode(b"caf\xe9.json")).write_text("{}")
    code, out, err = run_cli(monkeypatch, capsys, "package", str(written), "--target", "hf", "--json")
    assert code == 0, err
    result = json.loads(out)
    names = zipfile.ZipFile(written / "submit.zip").namelist()
    assert "model/notes.txt" not in names and "model/run.sh" not in names and "model/blob.bin" not in names
    assert "model/config.json" in names and "model/model.safetensors" in names
    assert all(b"secret" not in zipfile.ZipFile(written / "submit.zip").read(n) for n in names)
    skipped = " ".join(result["skipped"])
    assert "notes.txt (a link" in skipped and "run.sh" in skipped and "sub/" in skipped and "not UTF-8" in skipped


def test_package_refuses_a_folder_where_the_zip_goes(monkeypatch, capsys, written):
    (written / "submit.zip").mkdir()
    code, _, err = run_cli(monkeypatch, capsys, "package", str(written), "--target", "hf", "--force")
    _one_line_error(code, err)
    assert "a folder is in the way" in err


def test_report_on_broken_reports(monkeypatch, capsys, tmp_path, written):
    (written / "report.json").write_text('{"a"')
    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / "report.json").write_text("[1, 2]")
    code, out, err = run_cli(monkeypatch, capsys, "report", str(written), str(listed), "--json")
    assert code == 2 or all(r["status"] == "report.json unreadable" for r in json.loads(out)["rows"])
    assert "Traceback" not in err and "internal error" not in err


# -- prompt compress ------------------------------------------------------------------------------------------

def test_prompt_compress_refuses_prompts_beyond_the_scorer(monkeypatch, capsys, tmp_path, tiny_llama_dir):
    from compressor.prompt.commands import discover_folder
    from compressor.prompt.stage import EvaluatorHeadsParams

    out = tmp_path / "ehpc"
    discover_folder(tiny_llama_dir, EvaluatorHeadsParams(stage="evaluator_heads", heads=2, n_o=4, kernel=3,
                                                         probe_tokens=256), out=out)
    long = tmp_path / "long.txt"
    long.write_text("word " * 3000)  # 15,000 byte tokens > the tiny model's 2,048 positions
    code, _, err = run_cli(monkeypatch, capsys, "prompt", "compress", str(out), str(long))
    _one_line_error(code, err)
    assert "exceed the scorer's 2,048 positions" in err
    code, _, err = run_cli(monkeypatch, capsys, "prompt", "compress", str(out), str(tmp_path / "short.txt"))
    assert code == 2 and "Traceback" not in err
    (tmp_path / "short.txt").write_bytes(b"caf\xe9 au lait")
    code, _, err = run_cli(monkeypatch, capsys, "prompt", "compress", str(out), str(tmp_path / "short.txt"))
    _one_line_error(code, err)
    assert "not UTF-8" in err
    code, _, err = run_cli(monkeypatch, capsys, "prompt", "compress", str(out), "--question", "q" * 20000,
                           str(_write(tmp_path / "p.txt", "a short prompt")))
    _one_line_error(code, err)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- killed runs, full disks, concurrent runs ----------------------------------------------------------------

PAUSE = '''
import sys, time
import compressor.pipeline as pipeline
phase = sys.argv[1]
def pause(fn, before=False):
    def wrapped(*args, **kwargs):
        result = None if before else fn(*args, **kwargs)
        print("PAUSED", flush=True)
        time.sleep(600)
        return result
    return wrapped
if phase == "load":
    pipeline.load_model = pause(pipeline.load_model)
elif phase == "stage":
    pipeline.stage_function = lambda name, real=pipeline.stage_function: pause(real(name))
elif phase == "write":
    pipeline.write_model = pause(pipeline.write_model)
elif phase == "evaluate":
    pipeline.judge = pause(pipeline.judge, before=True)
from compressor.cli.app import main
sys.argv = ["compressor", *sys.argv[2:]]
main()
'''


@pytest.mark.parametrize("phase", ["load", "stage", "write", "evaluate"])
def test_kill_9_leaves_no_output_or_a_complete_one_and_nothing_behind(tmp_path, tiny_llama_dir, phase):
    out = tmp_path / "k" / "out"
    source_hash = content_hash(tiny_llama_dir)
    args = ["apply", "fp16", "--model", str(tiny_llama_dir), "--out", str(out), "--suite", "quick", "--limit", "1"]
    env = {**os.environ, "COMPRESSOR_HOME": str(tmp_path / "home")}
    run = subprocess.Popen([sys.executable, "-c", PAUSE, phase, *args], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, env=env, text=True)
    deadline = time.time() + 300
    while run.stdout.readline().strip() != "PAUSED":
        assert time.time() < deadline and run.poll() is None
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    if phase == "evaluate":  # written before the evaluation: complete, its report says the evaluation is pending
        assert (out / "model" / "model.safetensors").is_file()
        assert json.loads((out / "report.json").read_text())["evaluation"]["status"] == "pending"
    else:
        assert not out.exists()
    again = subprocess.run([sys.executable, "-m", "compressor.cli", "apply", "fp16", "--model", str(tiny_llama_dir),
                            "--out", str(out), "--no-eval", "--force"], capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]  # no staging folder, no lock file
    if phase in ("write", "stage"):
        assert "left by interrupted runs" in again.stderr or phase == "stage"
    assert content_hash(tiny_llama_dir) == source_hash


def test_a_full_disk_is_one_line_and_leaves_nothing(monkeypatch, capsys, tmp_path, tiny_llama_dir):
    import compressor.pipeline as pipeline

    def full(model, tokenizer, folder, provenance):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "model.safetensors").write_bytes(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(folder) / "model.safetensors"))

    monkeypatch.setattr(pipeline, "write_model", full)
    code, _, err = run_cli(monkeypatch, capsys, "apply", "fp16", "--model", str(tiny_llama_dir), "--out",
                           str(tmp_path / "o"), "--no-eval")
    _one_line_error(code, err)
    assert "the disk is full" in err and "nothing was written" in err
    assert list(tmp_path.iterdir()) == []


def test_a_second_run_to_the_same_output_is_refused(monkeypatch, capsys, tmp_path, tiny_llama_dir):
    from compressor.core.atomic import output_lock

    out = tmp_path / "o"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from compressor.core.atomic import "
                               "output_lock; from pathlib import Path\nwith output_lock(Path(sys.argv[1])):\n"
                               "    print('HELD', flush=True); time.sleep(60)", str(out)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "HELD"
    try:
        code, _, err = run_cli(monkeypatch, capsys, "apply", "fp16", "--model", str(tiny_llama_dir), "--out",
                               str(out), "--no-eval")
        _one_line_error(code, err)
        assert "another compressor run is writing it" in err and not out.exists()
    finally:
        holder.kill()
        holder.wait()
    with output_lock(out):  # a killed holder's lock is free again (the OS drops it with the process)
        pass


def test_an_output_that_appeared_meanwhile_is_not_replaced(tmp_path):
    from compressor.core.atomic import atomic_dir

    target = tmp_path / "o"
    with pytest.raises(UserError, match="already exists"):
        with atomic_dir(target) as staging:
            (staging / "f").write_text("mine")
            target.mkdir()  # another writer without the lock (say, a user) made it meanwhile
            (target / "theirs").write_text("theirs")
    assert (target / "theirs").read_text() == "theirs" and not (target / "f").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]
