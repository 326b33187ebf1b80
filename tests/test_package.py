import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from compressor.core.errors import CheckFailed, UserError
from compressor.export.package import package
from compressor.export.targets import Target, check_model_dir, load_target, rewrite_config
from repo import REPO_ROOT

TARGETS = REPO_ROOT / "export" / "targets"
LG = TARGETS / "lg-aimers.yaml"


@pytest.fixture(scope="module")
def lg_full():
    return load_target(LG)


@pytest.fixture(scope="module")
def lg(lg_full):
    """lg-aimers without its runtime checks (a fresh transformers process each): the tests below are about
    staging, rules and zipping; test_lg_aimers_runtime_check* cover the runtime checks."""
    return lg_full.model_copy(update={"runtime_checks": []})


def make_out(tmp_path: Path, tiny: Path, **config_edits) -> Path:
    """An `apply`-style output folder: OUT/model (+ provenance), config edited as a writer might leave it."""
    out = tmp_path / "out"
    model = out / "model"
    shutil.copytree(tiny, model)
    (model / "compressor.json").write_text('{"source": "tiny"}\n')
    config = json.loads((model / "config.json").read_text())
    config.update(transformers_version="4.57.1", **config_edits)
    (model / "config.json").write_text(json.dumps(config, indent=2))
    (out / "report.json").write_text("{}")
    return out


def zipped_config(zip_path: Path) -> dict:
    with zipfile.ZipFile(zip_path) as zf:
        return json.loads(zf.read("model/config.json"))


def test_saved_config_has_dtype_not_torch_dtype(tiny_dir):
    # transformers 4.57 writes `dtype`: the rewrite below has something real to do
    config = json.loads((tiny_dir / "config.json").read_text())
    assert "dtype" in config and "torch_dtype" not in config


def test_package_layout_rewrites_and_source_untouched(tmp_path, tiny_dir, lg):
    out = make_out(tmp_path, tiny_dir)
    source_config = (out / "model" / "config.json").read_bytes()
    result = package(out, lg)

    zip_path = out / "submit.zip"
    assert result["zip"] == str(zip_path) and result["target"] == "lg-aimers"
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        infos = {i.filename: i for i in zf.infolist()}
    assert names == result["files"] and all(n.startswith("model/") for n in names)
    for required in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "compressor.json"):
        assert f"model/{required}" in names
    assert infos["model/model.safetensors"].compress_type == zipfile.ZIP_STORED
    assert infos["model/config.json"].compress_type == zipfile.ZIP_DEFLATED
    assert result["zipped_bytes"] == zip_path.stat().st_size
    assert result["unzipped_bytes"] == sum(i.file_size for i in infos.values())

    config = zipped_config(zip_path)
    assert config["transformers_version"] == "4.57.3"
    assert config["torch_dtype"] == "float32" and "dtype" not in config
    assert result["rewrites"] == ["renamed dtype -> torch_dtype", "set transformers_version: '4.57.1' -> '4.57.3'"]
    assert (out / "model" / "config.json").read_bytes() == source_config
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # staging cleaned up


def test_zipped_model_loads_and_matches(tmp_path, tiny_dir, lg):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = make_out(tmp_path, tiny_dir)
    package(out, lg)
    extracted = tmp_path / "unzipped"
    with zipfile.ZipFile(out / "submit.zip") as zf:
        zf.extractall(extracted)
    assert [p.name for p in extracted.iterdir()] == ["model"]

    tok_a, tok_b = AutoTokenizer.from_pretrained(out / "model"), AutoTokenizer.from_pretrained(extracted / "model")
    text = "Hello, EXAONE! 안녕하세요"
    ids = tok_a(text, return_tensors="pt").input_ids
    assert torch.equal(ids, tok_b(text, return_tensors="pt").input_ids)
    model_a = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    model_b = AutoModelForCausalLM.from_pretrained(extracted / "model").eval()
    assert model_b.dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(model_a(ids).logits, model_b(ids).logits)


def test_existing_zip_needs_force(tmp_path, tiny_llama_dir, lg):
    out = make_out(tmp_path, tiny_llama_dir)
    package(out, lg)
    (out / "submit.zip").write_bytes(b"old")
    with pytest.raises(UserError, match="already exists"):
        package(out, lg)
    assert (out / "submit.zip").read_bytes() == b"old"
    package(out, lg, force=True)
    assert zipfile.is_zipfile(out / "submit.zip")


@pytest.mark.parametrize("edits, rule", [
    (dict(layer_types=["full_attention"] * 3), "layer_types_match"),
    (dict(num_key_value_heads=3), "heads_divisible"),
    (dict(num_hidden_layers=3), "uniform_layer_shapes"),
    (dict(tie_word_embeddings=False), "tied_embeddings_consistent"),
])
def test_broken_config_fails_without_zip(tmp_path, tiny_exaone4_dir, lg, edits, rule):
    out = make_out(tmp_path, tiny_exaone4_dir, **edits)
    with pytest.raises(CheckFailed, match=rule) as info:
        package(out, lg)
    assert "\n" not in str(info.value)
    assert not (out / "submit.zip").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_missing_model_folder(tmp_path, lg):
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match="model: no such folder"):
        package(tmp_path / "out", lg)


def test_missing_required_file(tmp_path, tiny_llama_dir, lg):
    out = make_out(tmp_path, tiny_llama_dir)
    (out / "model" / "tokenizer.json").unlink()
    with pytest.raises(CheckFailed, match=r"required_files: no tokenizer.json or tokenizer.model"):
        package(out, lg)


def test_size_limits(tmp_path, tiny_llama_dir, lg):
    out = make_out(tmp_path, tiny_llama_dir)
    tight = lg.model_copy(update={"limits": lg.limits.model_copy(update={"unzipped_bytes": 1000})})
    with pytest.raises(CheckFailed, match="limits: unzipped size"):
        package(out, tight)
    tight = lg.model_copy(update={"limits": lg.limits.model_copy(update={"zipped_bytes": 1000})})
    with pytest.raises(CheckFailed, match="limits: zipped size"):
        package(out, tight)
    assert not (out / "submit.zip").exists()


def test_hf_target_ships_as_saved(tmp_path, tiny_llama_dir):
    out = make_out(tmp_path, tiny_llama_dir)
    (out / "model" / "prompt_compressor.json").write_text("{}")  # extra files travel
    result = package(out, load_target(TARGETS / "hf.yaml"))
    assert result["rewrites"] == [] and "model/prompt_compressor.json" in result["files"]
    with zipfile.ZipFile(out / "submit.zip") as zf:
        assert zf.read("model/config.json") == (out / "model" / "config.json").read_bytes()


def test_rewrite_config_is_pure(lg):
    config = {"dtype": "bfloat16", "torch_dtype": "float32", "transformers_version": "4.58.0"}
    new = rewrite_config(config, lg)
    assert new == {"torch_dtype": "bfloat16", "transformers_version": "4.57.3"}
    assert config == {"dtype": "bfloat16", "torch_dtype": "float32", "transformers_version": "4.58.0"}


def _weights_folder(tmp_path, config: dict, tensors: dict) -> Path:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def test_quantized_embeddings_and_untied_head_are_caught(tmp_path, lg):
    config = {"model_type": "llama", "torch_dtype": "bfloat16", "transformers_version": "4.57.3",
              "tie_word_embeddings": True, "quantization_config": {"quant_method": "compressed-tensors", "ignore": []}}
    folder = _weights_folder(tmp_path, config, {
        "model.embed_tokens.weight": torch.zeros(4, 2, dtype=torch.int8),
        "model.embed_tokens.weight_scale": torch.ones(4, 1),
        "lm_head.weight": torch.zeros(4, 2),
    })
    problems = check_model_dir(folder, lg)
    assert "embeddings_not_quantized: quantization_config.ignore does not contain lm_head" in problems
    assert "embeddings_not_quantized: model.embed_tokens.weight (I8) is quantized" in problems
    assert "embeddings_not_quantized: model.embed_tokens.weight_scale (F32) is quantized" in problems
    assert any(p.startswith("tied_embeddings_consistent:") for p in problems)


def test_lg_aimers_runtime_check_runs_before_zipping(tmp_path, tiny_llama_dir, lg_full):
    assert lg_full.runtime_checks == ["transformers"]
    out = make_out(tmp_path, tiny_llama_dir)
    result = package(out, lg_full)
    [check] = result["runtime_checks"]
    assert check["runtime"] == "transformers" and check["passed"]
    assert check["agreement"] == 1.0 and check["prefix_agreement"] == 1.0  # fp32 weights: identical
    assert check["versions"]["transformers"] == "4.57.3"
    assert zipfile.is_zipfile(out / "submit.zip")


def test_lg_aimers_runtime_check_failure_refuses_zip(tmp_path, tiny_llama_dir, lg_full):
    out = make_out(tmp_path, tiny_llama_dir)
    weights = out / "model" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # header intact (the rules pass), tensor data cut short
    with pytest.raises(CheckFailed, match=r"fails target lg-aimers: runtime check transformers: "
                                          r"fails the folder check: staged model/model.safetensors: truncated") as info:
        package(out, lg_full)
    assert "\n" not in str(info.value)
    assert not (out / "submit.zip").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_bad_target_yaml(tmp_path):
    text = LG.read_text()
    unknown_key = tmp_path / "unknown-key.yaml"
    unknown_key.write_text(text.replace("  zip_root: model", "  zip_root: model\n  flat: true"))
    with pytest.raises(UserError) as info:
        load_target(unknown_key)
    assert str(info.value) == f"{unknown_key}: layout.flat: unknown key"

    unknown_rule = tmp_path / "unknown-rule.yaml"
    unknown_rule.write_text(text.replace("  - heads_divisible", "  - heads_divisable"))
    with pytest.raises(UserError, match=rf"^{unknown_rule}: checks\[1\]: unknown rule 'heads_divisable' \(known: "):
        load_target(unknown_rule)

    bad_size = tmp_path / "bad-size.yaml"
    bad_size.write_text(text.replace("zipped_bytes: 10 GB", "zipped_bytes: ten"))
    with pytest.raises(UserError, match=rf"^{bad_size}: limits.zipped_bytes: "):
        load_target(bad_size)

    unknown_runtime = tmp_path / "unknown-runtime.yaml"
    unknown_runtime.write_text(text.replace("runtime_checks: [transformers]", "runtime_checks: [transformers, onnx]"))
    with pytest.raises(UserError, match=rf"^{unknown_runtime}: runtime_checks\[1\]: unknown runtime 'onnx' "
                                        r"\(known: transformers, vllm, onnxruntime\)$"):
        load_target(unknown_runtime)

    with pytest.raises(UserError, match="no such target file"):
        load_target(tmp_path / "nope.yaml")


def test_targets_in_repo_load():
    for path in TARGETS.glob("*.yaml"):
        assert isinstance(load_target(path), Target)


def test_create_submit_sh(tmp_path, tiny_llama_dir):
    script = REPO_ROOT / "create_submit.sh"
    usage = subprocess.run([str(script)], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage:" in usage.stderr

    # a `compressor` on PATH running this checkout (the repo's .venv/bin/compressor wins when present)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "compressor"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "from compressor.cli.app import main; main()" "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = make_out(tmp_path, tiny_llama_dir)
    done = subprocess.run([str(script), str(out)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and zipfile.is_zipfile(out / "submit.zip")
