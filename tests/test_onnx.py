"""`compressor export onnx` and `check --runtime onnxruntime` on the tiny Llama and Exaone4 models (and SmolLM2, e2e)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from cli_runner import run_cli
from compressor.core.errors import CheckFailed, UserError
from compressor.export.check import check_output
from compressor.export.parity import PROMPTS
from compressor.core.layout import INT8_FILE, ONNX_RECORD_FILE as RECORD_FILE
from compressor.export.onnx_export import export_onnx
from compressor.export.onnx_int8 import quantize_int8
from compressor.export.package import package
from compressor.export.targets import Target
from compressor.models.sources import content_hash
from compressor.models.tiny import byte_tokenizer, tiny_llama_config, tiny_model
from repo import REPO_ROOT
from compressor.pipeline import apply_recipe
from compressor.recipe import parse_recipe
from compressor.runtimes.onnx_decoder import OnnxDecoder, load_ort_model, open_session

ROOT = REPO_ROOT
FP32_ATOL = 1e-4  # fp32 ONNX vs fp32 torch on the tiny models: measured ~6e-6


def as_output(tmp_path, model_dir, name="out"):
    """An `apply`-style output folder holding a copy of `model_dir` as model/."""
    out = tmp_path / name
    shutil.copytree(model_dir, out / "model")
    return out


@pytest.fixture(scope="module", params=["llama", "exaone4"])
def exported(request, tmp_path_factory, tiny_llama_dir, tiny_exaone4_dir):
    """Each tiny family exported once, with the int8 copy: (output folder, the returned record)."""
    source = {"llama": tiny_llama_dir, "exaone4": tiny_exaone4_dir}[request.param]
    out = as_output(tmp_path_factory.mktemp(f"onnx-{request.param}"), source)
    return out, export_onnx(out, int8=True)


def torch_greedy(model_dir, ids, new_tokens):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens, do_sample=False)[0].tolist()


def test_export_writes_a_checked_onnx_folder(exported):
    out, record = exported
    onnx_dir = out / "onnx"
    names = {p.name for p in onnx_dir.iterdir()}
    assert {"model.onnx", INT8_FILE, "config.json", "tokenizer.json", RECORD_FILE} <= names
    assert json.loads((onnx_dir / RECORD_FILE).read_text()) == json.loads(json.dumps(record))
    assert record["passed"] and record["task"] == "text-generation-with-past" and record["dtype"] == "float32"
    assert record["source_sha256"] == content_hash(out / "model")
    assert record["versions"]["onnxruntime"] and record["versions"]["optimum-onnx"]
    fp32, int8 = record["artifacts"]
    print(f"\n{record['family']}: fp32 diff {fp32['logits_max_abs_diff']}, int8 diff {int8['logits_max_abs_diff']} "
          f"agreement {int8['agreement']} prefix {int8['prefix_agreement']}")
    assert fp32["file"] == "model.onnx" and fp32["logits_max_abs_diff"] <= FP32_ATOL
    assert fp32["agreement"] == 1.0 and fp32["prefix_agreement"] == 1.0
    assert [r["prompt"] for r in fp32["prompts"]] == list(PROMPTS) and fp32["decode_tokens_per_s"] > 0
    # int8: lossy, reported not gated; weights in int8 make the file smaller, outputs stay close
    assert int8["quantization"]["method"] == "matmul-nbits" and int8["size_mb"] < 0.75 * fp32["size_mb"]
    assert int8["quantization"]["kept_float"][1:] == ["/lm_head/MatMul"]
    assert 0 < int8["logits_max_abs_diff"] < 2.0 and int8["agreement"] >= 0.25


def test_export_has_the_config_grouped_kv_cache(exported):
    out, _ = exported
    decoder = OnnxDecoder(open_session(out / "onnx" / "model.onnx"))
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["num_key_value_heads"] < config["num_attention_heads"]
    assert {tuple(i.shape[1::2]) for i in decoder.past} == {(config["num_key_value_heads"], config["head_dim"])}
    assert len(decoder.past) == 2 * config["num_hidden_layers"]


def test_ort_model_for_causal_lm_loads_and_generates_like_torch(exported):
    out, _ = exported
    ids = torch.tensor([list(range(40, 60))])  # 20 tokens: past the exaone4 model's sliding window of 16
    expected = torch_greedy(out / "model", ids, 24)
    model = load_ort_model(out / "onnx")
    with torch.no_grad():
        got = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, min_new_tokens=24,
                             do_sample=False)[0].tolist()
    assert got == expected
    int8 = load_ort_model(out / "onnx", file_name=INT8_FILE)
    assert len(int8.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)[0]) == 24


def test_int8_of_an_export_with_external_data(tmp_path, exported):
    """Models above 2 GB keep their weights in a file beside model.onnx: int8 copies do the same and load."""
    import onnx

    from compressor.export.onnx_int8 import METHODS

    out, _ = exported
    folder = tmp_path / "external"
    folder.mkdir()
    onnx.save_model(onnx.load(str(out / "onnx" / "model.onnx")), str(folder / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx_data", size_threshold=0)
    expected = OnnxDecoder(open_session(out / "onnx" / INT8_FILE)).greedy([5, 6, 7], 6)["token_ids"]
    for method in METHODS:
        settings = quantize_int8(folder / "model.onnx", folder / f"{method}.onnx", method)
        assert settings["external_data"] and (folder / f"{method}.onnx.data").is_file()
        run = OnnxDecoder(open_session(folder / f"{method}.onnx")).greedy([5, 6, 7], 6)
        assert len(run["token_ids"]) == 6
        if method == "matmul-nbits":  # the same quantizer on the same weights: the same int8 model
            assert run["token_ids"] == expected


def test_check_onnxruntime_passes_on_the_export(exported):
    out, _ = exported
    result = check_output(out, "onnxruntime", max_tokens=16)
    assert result["passed"], result["reasons"]
    assert result["artifact"] == str(out / "onnx" / "model.onnx")
    assert all(r["prompt_ids_match"] and r["agreement"] == 1.0 for r in result["prompts"])
    assert result["summary"]["logits_max_abs_diff"] <= FP32_ATOL
    assert result["runtime_info"]["versions"]["onnxruntime"] and result["runtime_info"]["dtype"] == "float32"
    int8 = check_output(out, "onnxruntime", max_tokens=16, min_agreement=0.1, onnx=out / "onnx" / INT8_FILE)
    assert int8["artifact"].endswith(INT8_FILE) and int8["summary"]["logits_max_abs_diff"] > FP32_ATOL


def test_check_fails_on_an_export_of_another_model(tmp_path, exported, tiny_llama_dir, tiny_exaone4_dir):
    out, record = exported
    other = tiny_exaone4_dir if record["family"] == "llama" else tiny_llama_dir
    mixed = as_output(tmp_path, other)
    shutil.copytree(out / "onnx", mixed / "onnx")
    result = check_output(mixed, "onnxruntime", max_tokens=8)
    assert not result["passed"] and "mean prefix agreement" in result["reasons"][-1]


def test_check_without_an_export_fails_in_one_line_before_any_work(tmp_path, tiny_llama_dir, monkeypatch,
                                                                      capsys):
    out = as_output(tmp_path, tiny_llama_dir)
    monkeypatch.setattr("compressor.export.check.reference", lambda *a: pytest.fail("reference computed"))
    with pytest.raises(CheckFailed, match=r"onnx/model.onnx: no ONNX artifact \(run `compressor export onnx .*` first\)"):
        check_output(out, "onnxruntime")
    code, _, err = run_cli(monkeypatch, capsys, "check", str(out), "--runtime", "onnxruntime")
    assert code == 2 and err.strip().splitlines() == [err.strip().splitlines()[-1]]
    assert err.startswith("error: ") and "compressor export onnx" in err


def test_check_on_a_corrupt_export_fails_in_one_line(tmp_path, exported, monkeypatch, capsys):
    out, _ = exported
    broken = as_output(tmp_path, out / "model")
    shutil.copytree(out / "onnx", broken / "onnx")
    model_onnx = broken / "onnx" / "model.onnx"
    model_onnx.write_bytes(model_onnx.read_bytes()[: model_onnx.stat().st_size // 2])
    with pytest.raises(CheckFailed, match=r"model.onnx: does not load in onnxruntime 1\.\d+\.\d+: ") as info:
        check_output(broken, "onnxruntime", max_tokens=4)
    assert "\n" not in str(info.value)
    code, _, err = run_cli(monkeypatch, capsys, "check", str(broken), "--runtime", "onnxruntime", "--max-tokens", "4")
    assert code == 2 and "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: ")


def test_export_after_drop_layers(tmp_path, tiny_exaone4_dir):
    recipe = parse_recipe({"name": "d", "model": str(tiny_exaone4_dir), "eval": {"enabled": False},
                           "stages": [{"stage": "drop_layers", "layers": [1, 2]}]})
    out = tmp_path / "drop"
    apply_recipe(recipe, "d.yaml", out_dir=out)
    record = export_onnx(out)
    assert record["passed"] and record["artifacts"][0]["logits_max_abs_diff"] <= FP32_ATOL
    decoder = OnnxDecoder(open_session(out / "onnx" / "model.onnx"))
    assert len(decoder.past) == 2 * 2
    assert check_output(out, "onnxruntime", max_tokens=8)["passed"]


def test_export_with_pruned_heads_uses_the_config_head_dim(tmp_path):
    """2 heads of 16 (1 KV head) in a 64-wide model: hidden / heads (32) is not the head dim."""
    config = tiny_llama_config(heads=2, kv_heads=1)
    config.head_dim = 16
    folder = tmp_path / "pruned" / "model"
    tiny_model(config).save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    record = export_onnx(folder.parent)
    assert record["passed"] and record["artifacts"][0]["logits_max_abs_diff"] <= FP32_ATOL
    model = load_ort_model(folder.parent / "onnx")
    assert (model.num_key_value_heads, model.embed_size_per_head) == (1, 16)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    assert model.generate(ids, max_new_tokens=12, min_new_tokens=12, do_sample=False)[0].tolist() == \
        torch_greedy(folder, ids, 12)


def test_export_refuses_to_overwrite_and_to_replace_the_model(tmp_path, tiny_llama_dir, monkeypatch):
    out = as_output(tmp_path, tiny_llama_dir)
    (out / "onnx").mkdir()
    (out / "onnx" / "keep.txt").write_text("mine")
    monkeypatch.setattr("compressor.models.sources.load_model", lambda *a, **k: pytest.fail("model loaded"))
    with pytest.raises(UserError, match=r"onnx: already exists \(pass --force to overwrite\)"):
        export_onnx(out)
    with pytest.raises(UserError, match="would replace the model folder"):
        export_onnx(out, out=out / "model", force=True)
    with pytest.raises(UserError, match="would replace the model folder"):
        export_onnx(out, out=out, force=True)
    assert (out / "onnx" / "keep.txt").read_text() == "mine"
    monkeypatch.undo()
    export_onnx(out, force=True)
    assert not (out / "onnx" / "keep.txt").exists() and (out / "onnx" / "model.onnx").is_file()


def test_export_that_disagrees_writes_nothing(tmp_path, tiny_llama_dir):
    out = as_output(tmp_path, tiny_llama_dir)
    with pytest.raises(CheckFailed, match=r"the fp32 ONNX export disagrees with torch: logits max abs diff .* > atol "
                                          r"1e-12 \(nothing written to .*onnx\)"):
        export_onnx(out, atol=1e-12)
    assert sorted(p.name for p in out.iterdir()) == ["model"]  # no onnx/, no temporary folder left


def test_export_rejects_an_unsupported_family(tmp_path):
    folder = tmp_path / "gpt2" / "model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(UserError, match="model_type 'gpt2' is not supported"):
        export_onnx(folder.parent)


def test_int8_methods_write_their_operators(tmp_path, exported):
    import onnx

    out, record = exported
    nodes = onnx.load(str(out / "onnx" / INT8_FILE)).graph.node
    assert "MatMulNBits" in {n.op_type for n in nodes} and "MatMulInteger" not in {n.op_type for n in nodes}
    assert [n.op_type for n in nodes if n.name == "/lm_head/MatMul"] == ["MatMul"]  # the LM head stays float
    dynamic = tmp_path / "dynamic.onnx"
    settings = quantize_int8(out / "onnx" / "model.onnx", dynamic, "dynamic")
    assert settings["method"] == "dynamic" and dynamic.stat().st_size < (out / "onnx" / "model.onnx").stat().st_size
    graph = onnx.load(str(dynamic)).graph
    assert "MatMulInteger" in {n.op_type for n in graph.node}
    assert [n.op_type for n in graph.node if n.name == "/lm_head/MatMul"] == ["MatMul"]  # the LM head stays float
    with pytest.raises(ValueError, match="unknown int8 method 'int4'"):
        quantize_int8(out / "onnx" / "model.onnx", dynamic, "int4")


def test_cli_export(tmp_path, tiny_llama_dir, monkeypatch, capsys):
    out = as_output(tmp_path, tiny_llama_dir)
    code, stdout, err = run_cli(monkeypatch, capsys, "export", "onnx", str(out), "--json")
    assert code == 0, err
    record = json.loads(stdout)
    assert record["passed"] and [a["file"] for a in record["artifacts"]] == ["model.onnx"]
    code, _, err = run_cli(monkeypatch, capsys, "export", "onnx", str(out))
    assert code == 2 and err.strip() == f"error: {out / 'onnx'}: already exists (pass --force to overwrite)"
    code, _, err = run_cli(monkeypatch, capsys, "export", "onnx", str(out), "--int8-method", "dynamic", "--force")
    assert code == 2 and err.strip() == "error: --int8-method applies with --int8 only"
    code, _, err = run_cli(monkeypatch, capsys, "check", str(out), "--runtime", "transformers", "--onnx", "x")
    assert code == 2 and "--onnx applies to --runtime onnxruntime only" in err


def test_package_runs_the_onnxruntime_check(tmp_path, exported):
    out, _ = exported
    target = Target(name="onnx-too", runtime_checks=["onnxruntime"])
    staged = as_output(tmp_path, out / "model", "with-onnx")
    shutil.copytree(out / "onnx", staged / "onnx")
    result = package(staged, target)
    assert result["runtime_checks"][0]["runtime"] == "onnxruntime" and result["runtime_checks"][0]["agreement"] == 1.0
    assert not any(name.startswith("model/onnx") or "onnx/" in name for name in result["files"])
    bare = as_output(tmp_path, out / "model", "without-onnx")
    with pytest.raises(CheckFailed, match=r"fails target onnx-too: runtime check onnxruntime: .*no ONNX artifact"):
        package(bare, target)


def test_export_model_takes_a_model_and_an_onnx_config(tmp_path, tiny_exaone4_dir):
    """The extension point: any in-memory model, any task / optimum OnnxConfig (here: no KV cache)."""
    from optimum.exporters.tasks import TasksManager

    from compressor.export.onnx_export import export_model
    from compressor.models.sources import load_model

    model, tokenizer = load_model(tiny_exaone4_dir, torch.device("cpu"), torch.float32)
    export_model(model, tokenizer, tmp_path / "onnx")  # registers the exaone4 config
    constructor = TasksManager.get_exporter_config_constructor(
        exporter="onnx", model_type="exaone4", task="text-generation", library_name="transformers")
    export_model(model, tokenizer, tmp_path / "no-cache", task="text-generation",
                 onnx_config=constructor(model.config))
    session = open_session(tmp_path / "no-cache" / "model.onnx")
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "position_ids"]
    with pytest.raises(ValueError, match=r"no input past_key_values"):
        OnnxDecoder(session)
    ids = list(range(3, 23))
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0].numpy()
    got = session.run(["logits"], {"input_ids": np.array([ids]), "attention_mask": np.ones((1, 20), dtype=np.int64),
                                   "position_ids": np.arange(20)[None]})[0][0]
    assert np.abs(got - expected).max() <= FP32_ATOL
    assert np.abs(OnnxDecoder(open_session(tmp_path / "onnx" / "model.onnx")).logits(ids) - expected).max() <= FP32_ATOL


@pytest.mark.e2e
def test_smollm2_export_int8_and_check(tmp_path):
    out = tmp_path / "fp16"
    subprocess.run([sys.executable, "-m", "compressor.cli", "apply", str(ROOT / "recipes/fp16.yaml"), "--out", str(out),
                    "--no-eval"], check=True, cwd=ROOT)
    done = subprocess.run([sys.executable, "-m", "compressor.cli", "export", "onnx", str(out), "--int8", "--json"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(done.stdout)
    fp32, int8 = record["artifacts"]
    print(f"\nSmolLM2 fp16 -> ONNX: fp32 diff {fp32['logits_max_abs_diff']} agreement {fp32['agreement']} "
          f"{fp32['size_mb']} MB {fp32['decode_tokens_per_s']} tok/s; int8 diff {int8['logits_max_abs_diff']} "
          f"agreement {int8['agreement']} {int8['size_mb']} MB {int8['decode_tokens_per_s']} tok/s; "
          f"export {record['seconds']['export']} s")
    assert fp32["logits_max_abs_diff"] < 1e-3 and fp32["prefix_agreement"] >= 0.75
    assert int8["size_mb"] < 0.5 * fp32["size_mb"] and int8["prefix_agreement"] >= 0.5  # measured ~0.85
    done = subprocess.run([sys.executable, "-m", "compressor.cli", "check", str(out), "--runtime", "onnxruntime",
                           "--json"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["passed"] and all(r["prompt_ids_match"] for r in result["prompts"])
