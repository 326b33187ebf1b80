"""Offloaded, layer-by-layer processing (`model: {device_map, max_memory, offload_folder}`): a model whose layers
accelerate keeps on disk gives the same results as the in-memory path (importance scores to 1e-5, the same layers
dropped, identical tensors written), leaves no offload folder behind and never writes to its source; bad settings
and stages that cannot run offloaded are refused in one line."""

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import compressor.pipeline as pipeline
from cli_runner import assert_one_line_error, run_cli
from compressor.core.errors import UserError
from compressor.models.sources import content_hash, load_model
from compressor.models.tiny import save_tiny
from compressor.recipe import parse_recipe

# the tiny models (6 layers of ~150 kB in fp32, embeddings ~66 kB): the embeddings stay, every layer goes to disk
# (accelerate also keeps room for the largest layer on the CPU, to onload it)
SMALL = {"cpu": 300_000}
CALIBRATION = {"samples": 4, "seq_len": 64}


@pytest.fixture(scope="module")
def tiny6(tmp_path_factory):
    """6-layer tiny Llama (fp32), Exaone4 (hybrid attention, fp32) and Llama stored in bf16."""
    folders = {}
    for name, kind, extra in (("llama", "llama", {}), ("exaone4", "exaone4", {"hybrid": True}),
                              ("llama-bf16", "llama", {})):
        folder = save_tiny(kind, tmp_path_factory.mktemp(name), layers=6, **extra)
        if name.endswith("bf16"):
            from transformers import AutoModelForCausalLM

            AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).save_pretrained(folder)
        folders[name] = folder
    return folders


def apply_both(source: Path, stages: list, tmp_path: Path, offload=None) -> dict:
    """Apply `stages` in memory and offloaded; {side: (report, saved tensors, output folder)}."""
    sides = {"memory": {}, "offloaded": {"device_map": "auto", "max_memory": SMALL, **(offload or {})}}
    results = {}
    for side, model in sides.items():
        recipe = parse_recipe({"name": "t", "model": {"id": str(source), **model}, "stages": stages,
                               "eval": {"enabled": False}}, "t.yaml")
        out = tmp_path / side
        report = pipeline.apply_recipe(recipe, "t.yaml", out_dir=out)
        results[side] = (report, load_file(out / "model" / "model.safetensors"), out)
    return results


def assert_identical(results: dict) -> None:
    (_, memory, mem_out), (_, offloaded, off_out) = results["memory"], results["offloaded"]
    assert memory.keys() == offloaded.keys()
    different = [k for k in memory if memory[k].dtype != offloaded[k].dtype or not torch.equal(memory[k], offloaded[k])]
    assert not different, different
    configs = [json.loads((out / "model" / "config.json").read_text()) for out in (mem_out, off_out)]
    assert configs[0] == configs[1]


def results_of(results: dict, side: str) -> list[dict]:
    return [{k: v for k, v in s["result"].items() if not k.endswith("seconds")} for s in results[side][0]["stages"]]


@pytest.mark.parametrize("family", ["llama", "exaone4"])
def test_importance_scores_equal_in_memory_and_offloaded(family, tiny6, tmp_path):
    from compressor.data.calibration import CalibrationSpec, calibration_windows
    from compressor.edits.importance import collect_importance
    from compressor.models.adapters import adapter_for

    memory, tokenizer = load_model(tiny6[family], torch.device("cpu"))
    offloaded, _ = load_model(tiny6[family], torch.device("cpu"), device_map="auto", max_memory=SMALL,
                              offload_folder=tmp_path / "offload")
    assert list(offloaded.hf_device_map.values()).count("disk") >= 1
    assert all(p.device.type == "meta" for p in offloaded.model.layers.parameters())  # every layer on disk
    windows = calibration_windows(tokenizer, CalibrationSpec(**CALIBRATION))
    adapter = adapter_for(memory.config)
    expected = collect_importance(memory, adapter, windows)
    got = collect_importance(offloaded, adapter, windows)
    for name in ("heads", "kv_groups", "neurons", "channels"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), rtol=0, atol=1e-5)
    for name in ("block_influence", "angular_distance"):
        assert getattr(got, name) == pytest.approx(getattr(expected, name), abs=1e-5)
    del offloaded
    gc.collect()
    assert not any((tmp_path / "offload").iterdir())  # the run's own subfolder goes with the model


@pytest.mark.parametrize("family, by", [("llama", "block_influence"), ("exaone4", "angular"),
                                        ("llama-bf16", "block_influence")])
def test_ranked_drop_and_w8a8_equal_in_memory_and_offloaded(family, by, tiny6, tmp_path):
    before = content_hash(tiny6[family])
    stages = [{"stage": "drop_layers", "count": 2, "by": by, "calibration": CALIBRATION},
              {"stage": "quantize", "scheme": "w8a8-int8"}]
    results = apply_both(tiny6[family], stages, tmp_path)
    assert results_of(results, "memory") == results_of(results, "offloaded")  # same scores, same layers dropped
    assert_identical(results)
    assert content_hash(tiny6[family]) == before


def test_calibrated_quantization_equal_in_memory_and_offloaded(tiny6, tmp_path):
    """SmoothQuant + GPTQ: llm-compressor's sequential pipeline on the offloaded model."""
    stages = [{"stage": "quantize", "scheme": "w8a8-int8", "method": "gptq", "smoothquant": 0.8,
               "calibration": CALIBRATION}]
    assert_identical(apply_both(tiny6["llama-bf16"], stages, tmp_path))


def test_fp16_cast_gives_identical_output(tiny6, tmp_path):
    results = apply_both(tiny6["exaone4"], [{"stage": "drop_layers", "layers": [1, 4]},
                                            {"stage": "cast", "dtype": "fp16"}], tmp_path)
    assert_identical(results)
    from transformers import AutoModelForCausalLM

    ids = torch.arange(3, 60)[None]
    logits = [AutoModelForCausalLM.from_pretrained(results[side][2] / "model", dtype="auto").eval()(ids).logits
              for side in ("memory", "offloaded")]
    assert logits[0].dtype == torch.float16 and torch.equal(logits[0], logits[1])


def test_width_edits_equal_in_memory_and_offloaded(tiny6, tmp_path):
    """Slicing an offloaded weight onloads it first and writes the sliced one back to the offload folder."""
    stages = [{"stage": "prune_heads", "keep_fraction": 0.5, "gqa": "whole_groups", "by": "importance",
               "calibration": CALIBRATION},
              {"stage": "prune_mlp", "intermediate_size": 64, "calibration": CALIBRATION},
              {"stage": "reduce_hidden", "hidden_size": 48, "calibration": CALIBRATION},
              {"stage": "quantize", "scheme": "w8a8-int8"}]
    results = apply_both(tiny6["exaone4"], stages, tmp_path)
    assert results_of(results, "memory") == results_of(results, "offloaded")
    assert_identical(results)


def test_evaluator_heads_equal_in_memory_and_offloaded(tiny6, tmp_path):
    results = apply_both(tiny6["llama"], [{"stage": "evaluator_heads", "probe_tokens": 200}], tmp_path)
    specs = [(results[side][2] / "model" / "prompt_compressor.json").read_text() for side in results]
    assert specs[0] == specs[1]


def test_heal_with_device_map_and_nothing_offloaded_equals_in_memory(tiny6, tmp_path):
    """The teacher of a device_map run is the source loaded again (not a deep copy)."""
    stages = [{"stage": "drop_layers", "count": 1, "from": "top"},
              {"stage": "heal", "steps": 2, "seq_len": 32, "batch": 2, "holdout": 2}]
    results = apply_both(tiny6["llama"], stages, tmp_path, offload={"max_memory": None})
    assert_identical(results)


def _write(tmp_path: Path, model: dict, stages=()) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "r", "model": model, "stages": list(stages),
                                    "eval": {"enabled": False}}, sort_keys=False))
    return path


def test_temporary_offload_folder_is_gone_and_source_unchanged(tiny6, tmp_path):
    """A CLI run, as users run it: the offload folders (default and inside a given offload_folder) are removed."""
    source = tiny6["llama"]
    before = content_hash(source)
    temp, given = tmp_path / "tmp", tmp_path / "given"
    temp.mkdir()
    for index, extra in enumerate(({}, {"offload_folder": str(given)})):
        recipe = _write(tmp_path, {"id": str(source), "device_map": "auto", "max_memory": SMALL, **extra},
                        [{"stage": "drop_layers", "count": 2, "by": "angular", "calibration": CALIBRATION},
                         {"stage": "quantize", "scheme": "w8a8-int8"}])
        run = subprocess.run([sys.executable, "-m", "compressor.cli", "apply", str(recipe), "--out",
                              str(tmp_path / f"out{index}")], capture_output=True, text=True,
                             env={**os.environ, "TMPDIR": str(temp)})
        assert run.returncode == 0, run.stderr[-2000:]
        assert (tmp_path / f"out{index}" / "model" / "model.safetensors").is_file()
    assert [p.name for p in temp.iterdir() if p.name.startswith("compressor-offload-")] == []
    assert given.is_dir() and not any(given.iterdir())
    assert content_hash(source) == before


@pytest.mark.parametrize("model, message", [
    ({"device_map": "auto", "max_memory": {"gpu": "1GB"}}, "model.max_memory.gpu: not a device"),
    ({"device_map": "auto", "max_memory": {"cpu": "0GB"}}, "model.max_memory.cpu: '0GB': a size must be more than 0"),
    ({"device_map": "auto", "max_memory": {"cpu": -5}}, "model.max_memory.cpu: -5: a size must be more than 0"),
    ({"device_map": "auto", "max_memory": {"cpu": "lots"}}, "model.max_memory.cpu: 'lots' is not a size"),
    ({"device_map": "auto", "max_memory": {"cpu": "2gb"}}, "model.max_memory.cpu: '2gb' is not a size"),
    ({"device_map": "auto", "max_memory": {0: "1GB", "cuda:0": "2GB"}}, "0 and cuda:0 name the same device"),
    ({"max_memory": {"cpu": "1GB"}}, "model.max_memory: needs device_map"),
    ({"offload_folder": "/tmp"}, "model.offload_folder: needs device_map"),
    ({"device_map": "balanced"}, "model.device_map: Input should be 'auto' or 'sequential'"),
    ({"device_map": "auto", "device": "mps"}, "model.device_map: accelerate offloading does not run on mps"),
    ({"device_map": "auto", "max_memory": {3: "1GB"}}, "model.max_memory.3: no CUDA device 3"),
    ({"device_map": "auto", "max_memory": {"cpu": 1}}, "model.max_memory"),  # nothing fits, not even a layer
])
def test_bad_offload_settings_fail_in_one_line(model, message, tiny6, tmp_path, monkeypatch, capsys):
    if "no CUDA device" in message and torch.cuda.device_count() > 3:
        pytest.skip("this machine has a CUDA device 3")
    recipe = _write(tmp_path, {"id": str(tiny6["llama"]), **model})
    code, _, err = run_cli(monkeypatch, capsys, "apply", str(recipe), "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err)
    assert message in err, err


def test_offload_folder_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    for folder in (tmp_path / "file", tmp_path / "file" / "below"):
        with pytest.raises(UserError, match=r"model\.offload_folder: .*file exists and is not a folder"):
            parse_recipe({"name": "t", "model": {"id": "x", "device_map": "auto", "offload_folder": str(folder)}},
                         "t.yaml")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_offload_folder_is_refused(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(UserError, match=r"model\.offload_folder: .* is not writable"):
        parse_recipe({"name": "t", "model": {"id": "x", "device_map": "auto", "offload_folder": str(tmp_path / "ro")}},
                     "t.yaml")


@pytest.mark.parametrize("stage, message", [
    ({"stage": "heal", "steps": 1}, "stages[0] (heal): not supported with model.device_map offloading weights"),
    ({"stage": "quantize", "scheme": "llm-int8", "backend": "bitsandbytes"},
     "stages[0] (quantize): not supported with model.device_map offloading weights: backend bitsandbytes"),
])
def test_stages_that_cannot_run_offloaded_are_refused(stage, message, tiny6, tmp_path, monkeypatch, capsys):
    recipe = _write(tmp_path, {"id": str(tiny6["llama"]), "device_map": "auto", "max_memory": SMALL}, [stage])
    code, _, err = run_cli(monkeypatch, capsys, "apply", str(recipe), "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err)
    assert message in err, err
    assert not (tmp_path / "out").exists()
