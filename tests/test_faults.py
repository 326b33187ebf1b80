"""Killed runs, full disks and concurrent runs: no output or a complete one, nothing left behind, the source
unchanged, a second writer refused in one line."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_runner import assert_one_line_error, run_cli
from compressor.core.errors import UserError
from compressor.models.sources import content_hash


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
    assert_one_line_error(code, err)
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
        assert_one_line_error(code, err)
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


def test_apply_to_a_relative_out_whose_folder_does_not_exist_yet(monkeypatch, capsys, tmp_path, tiny_llama_dir):
    # `make run` on a fresh clone: out/ is missing, the lock is taken before and after it is made
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "apply", "fp16", "--model", str(tiny_llama_dir), "--out",
                           "new/fp16", "--no-eval")
    assert code == 0, err
    assert (tmp_path / "new" / "fp16" / "model" / "config.json").is_file()
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["fp16"]
