"""Hostile model folders, output folders and prompts: refused in one line before any edit, the source never
modified, nothing from outside model/ packaged."""

import json
import os
import zipfile
from pathlib import Path

import pytest

from cli_runner import assert_one_line_error, run_cli


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
        assert_one_line_error(code, err)
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
    assert_one_line_error(code, err)
    assert "invalid JSON" in err and "'mpt'" not in err


def test_an_empty_model_id_is_an_error(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "apply", "fp16", "--model", "", "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err)
    assert "empty model id" in err


def test_pickled_weights_need_an_explicit_opt_in(monkeypatch, capsys, tmp_path):
    from compressor.models.tiny import byte_tokenizer, tiny_llama_config, tiny_model

    model = tmp_path / "pickled"
    tiny_model(tiny_llama_config()).save_pretrained(model, safe_serialization=False)
    byte_tokenizer().save_pretrained(model)
    assert (model / "pytorch_model.bin").is_file() and not list(model.glob("*.safetensors"))
    code, _, err = run_cli(monkeypatch, capsys, "apply", "fp16", "--model", str(model), "--out", str(tmp_path / "o"),
                           "--no-eval")
    assert_one_line_error(code, err)
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
    assert_one_line_error(code, err)
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

def test_prompt_compress_refuses_prompts_beyond_the_scorer(monkeypatch, capsys, caplog, tmp_path, tiny_llama_dir):
    from transformers.utils import logging as hf_logging

    from compressor.prompt.commands import discover_folder
    from compressor.prompt.stage import EvaluatorHeadsParams

    out = tmp_path / "ehpc"
    discover_folder(tiny_llama_dir, EvaluatorHeadsParams(stage="evaluator_heads", heads=2, n_o=4, kernel=3,
                                                         probe_tokens=256), out=out)
    # a tokenizer that knows its length warns past it, on stderr: our one line must stay the only one
    config_path = out / "model" / "tokenizer_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "model_max_length": 2048}))
    long = tmp_path / "long.txt"
    long.write_text("word " * 3000)  # 15,000 byte tokens > the tiny model's 2,048 positions
    hf_logging.enable_propagation()  # transformers' own handler writes past capsys: let caplog see its records
    try:
        code, _, err = run_cli(monkeypatch, capsys, "prompt", "compress", str(out), str(long))
    finally:
        hf_logging.disable_propagation()
    assert_one_line_error(code, err)
    assert "exceed the scorer's 2,048 positions" in err
    assert not [r for r in caplog.records if "sequence length is longer" in r.getMessage()]
    code, _, err = run_cli(monkeypatch, capsys, "prompt", "compress", str(out), str(tmp_path / "short.txt"))
    assert code == 2 and "Traceback" not in err
    (tmp_path / "short.txt").write_bytes(b"caf\xe9 au lait")
    code, _, err = run_cli(monkeypatch, capsys, "prompt", "compress", str(out), str(tmp_path / "short.txt"))
    assert_one_line_error(code, err)
    assert "not UTF-8" in err
    code, _, err = run_cli(monkeypatch, capsys, "prompt", "compress", str(out), "--question", "q" * 20000,
                           str(_write(tmp_path / "p.txt", "a short prompt")))
    assert_one_line_error(code, err)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
