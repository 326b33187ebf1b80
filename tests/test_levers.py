"""The server's levers: KV-cache schemes (written, calibrated, read back, judged by the target and by vLLM),
the `context` stage (shorter max_position_embeddings, RoPE unchanged, refused where the suite does not fit),
W8A8 variants (static per-tensor activations, the mse observer)."""

import json
import struct
import subprocess
import sys

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

import compressor.pipeline as pipeline
from compressor.core.errors import UserError
from compressor.edits.context import ContextParams
from compressor.evaluate.prompt_lengths import TaskPrompts
from compressor.export.target_rules import RULES, ModelDir
from compressor.quantize.llmcompressor_backend import build_modifiers
from compressor.quantize.stage import QuantizeParams
from compressor.recipe import check_against_config, load_recipe, parse_recipe
from compressor.runtimes.vllm_runtime import vllm_python
from repo import REPO_ROOT

SMALL_CALIBRATION = {"samples": 4, "seq_len": 64}
KV_FP8 = {"stage": "quantize", "scheme": "w8a8-int8", "kv_cache": "fp8", "calibration": SMALL_CALIBRATION}
TOKEN_IDS = torch.tensor([[40, 104, 101, 32, 99, 97, 112, 105, 116, 97, 108, 32, 111, 102, 32, 116]])


def recipe_for(model_dir, stages, **eval_block):
    return parse_recipe({"name": "lever", "model": str(model_dir), "stages": stages,
                         "eval": {"enabled": False, **eval_block}})


def header(path) -> dict:
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return json.loads(handle.read(length))


def logits(folder, **kwargs):
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs).eval()
    with torch.no_grad():
        return model(TOKEN_IDS).logits


@pytest.fixture(scope="module")
def tiny_exaone4_head32(tmp_path_factory):
    """vLLM's CPU build keeps an fp8 KV cache only for head sizes divisible by 32 (the tiny default is 16)."""
    from compressor.models.tiny import save_tiny

    return save_tiny("exaone4", tmp_path_factory.mktemp("tiny-exaone4-h32"), hidden=128, heads=4, kv_heads=2,
                     hybrid=True)


@pytest.fixture(scope="module")
def kv_fp8_out(tmp_path_factory, tiny_exaone4_head32):
    out = tmp_path_factory.mktemp("kv") / "w8a8-kv-fp8"
    report = pipeline.apply_recipe(recipe_for(tiny_exaone4_head32, [KV_FP8]), "kv.yaml", out_dir=out)
    return out, report


# --- KV-cache schemes ---------------------------------------------------------------------------------------------

def test_kv_cache_scheme_is_written_with_calibrated_scales_and_reloads(kv_fp8_out, tiny_exaone4_head32):
    out, report = kv_fp8_out
    folder = out / "model"
    config = json.loads((folder / "config.json").read_text())
    scheme = config["quantization_config"]["kv_cache_scheme"]
    assert (scheme["num_bits"], scheme["type"], scheme["strategy"], scheme["symmetric"], scheme["dynamic"]) == \
        (8, "float", "tensor", True, False)
    tensors = header(folder / "model.safetensors")
    layers = config["num_hidden_layers"]
    for kind in ("k_scale", "v_scale"):
        names = [k for k in tensors if k.endswith(f"self_attn.{kind}")]
        assert len(names) == layers, (kind, names)
    from safetensors import safe_open

    with safe_open(folder / "model.safetensors", "pt") as f:
        scales = [f.get_tensor(k).float() for k in f.keys() if k.endswith(("k_scale", "v_scale"))]
    assert all(torch.isfinite(s).all() and (s > 0).all() for s in scales)
    assert len({round(float(s.flatten()[0]), 6) for s in scales}) > 1  # calibrated per layer, not a constant
    assert report["stages"][0]["result"]["kv_cache"] == "fp8"
    assert "kv_cache_scheme" in json.dumps(report["stages"][0]["result"]["modifiers"])
    reloaded, source = logits(folder), logits(tiny_exaone4_head32)
    assert float((reloaded - source).norm() / source.norm()) < 0.12  # the stock loader reads the folder


def test_target_rules_judge_the_kv_cache_scheme():
    from compressor.export.targets import load_target

    target = load_target(REPO_ROOT / "export/targets/lg-aimers.yaml")
    assert {"kv_cache_scheme_loadable", "kv_cache_scheme_used"} <= set(target.advisories)

    def folder(kind):
        scheme = {"num_bits": 8, "type": kind, "strategy": "tensor", "symmetric": True, "dynamic": False}
        return ModelDir(REPO_ROOT, {"quantization_config": {"kv_cache_scheme": scheme}})

    assert RULES["kv_cache_scheme_loadable"](folder("float"), target) == []
    [problem] = RULES["kv_cache_scheme_loadable"](folder("int"), target)
    assert "8-bit int" in problem and "vLLM loads only an 8-bit float" in problem
    [advice] = RULES["kv_cache_scheme_used"](folder("float"), target)
    assert "L4" in advice and "9.0" in advice
    assert RULES["kv_cache_scheme_used"](ModelDir(REPO_ROOT, {}), target) == []


def test_package_for_lg_aimers_warns_about_the_kv_scheme_and_compressed_tensors_0_13_loads_it(kv_fp8_out, tmp_path):
    import shutil
    import zipfile

    from compressor.export.package import package
    from compressor.export.targets import load_target

    out = tmp_path / "out"
    shutil.copytree(kv_fp8_out[0], out)
    result = package(out, load_target(REPO_ROOT / "export/targets/lg-aimers.yaml"))
    assert [w.split(":")[0] for w in result["warnings"]] == ["kv_cache_scheme_used"]  # fp8 loads; its use is disputed
    ct013 = REPO_ROOT / ".venv-ct013" / "bin" / "python"
    if not ct013.is_file():
        pytest.skip("no .venv-ct013: run `make install-ct013`")
    with zipfile.ZipFile(result["zip"]) as zf:
        zf.extractall(tmp_path / "unzipped")
    worker = ("import json, sys; from compressed_tensors.quantization import QuantizationConfig; "
              "import compressed_tensors, transformers, torch; "
              "c = QuantizationConfig.model_validate(json.load(open(sys.argv[1] + '/config.json'))['quantization_config']); "
              "transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32); "
              "print(json.dumps({'ct': compressed_tensors.__version__, 'kv': c.kv_cache_scheme.type}))")
    done = subprocess.run([str(ct013), "-c", worker, str(tmp_path / "unzipped" / "model")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"ct": "0.13.0", "kv": "float"}


@pytest.mark.e2e
@pytest.mark.skipif(vllm_python() is None, reason="no .venv-vllm: run `make install-vllm` (CI does)")
def test_check_reports_the_kv_cache_the_engine_allocated(kv_fp8_out):
    out, _ = kv_fp8_out
    done = subprocess.run([sys.executable, "-m", "compressor.cli", "check", str(out), "--runtime", "vllm", "--eager",
                           "--json"], capture_output=True, text=True, timeout=900)
    assert done.stdout, done.stderr[-1500:]
    result = json.loads(done.stdout)
    kv = result["kv_cache"]
    assert kv["checkpoint_scheme"] == "8-bit float" and kv["kv_cache_tokens"] > 0
    assert kv["engine_dtype_from"] == "engine workers"  # the front end's config keeps saying `auto`
    # vLLM 0.32's CPU build honours the scheme (head size 32); the engine's own figure, not the config's
    assert kv["engine_dtype"] == "fp8" and kv["used"] and "note" not in kv
    print(f"\nvLLM {result['versions'].get('vllm')}: KV cache {kv}")


# --- W8A8 variants ------------------------------------------------------------------------------------------------

def test_observers_and_static_activations_reach_llm_compressor(tiny_exaone4_dir):
    from compressor.models.adapters import adapter_for

    adapter = adapter_for(AutoConfig.from_pretrained(tiny_exaone4_dir))

    def scheme_of(**stage):
        [modifier] = build_modifiers(QuantizeParams(stage="quantize", **stage), adapter)
        return modifier.config_groups["group_0"], modifier.kv_cache_scheme

    static, kv = scheme_of(scheme="w8a8-int8-static", kv_cache="int8")
    assert (static.input_activations.strategy, static.input_activations.dynamic) == ("tensor", False)
    assert static.input_activations.observer == "static_minmax" and static.weights.strategy == "channel"
    assert (kv.type, kv.observer) == ("int", "static_minmax")
    mse, kv = scheme_of(scheme="w8a8-int8-static", observer="mse", kv_cache="fp8")
    assert (mse.weights.observer, mse.input_activations.observer, kv.observer) == ("memoryless_mse", "mse", "mse")
    dynamic, kv = scheme_of(scheme="w8a8-int8", observer="mse")
    assert dynamic.weights.observer == "memoryless_mse" and dynamic.input_activations.dynamic is True and kv is None
    default, _ = scheme_of(scheme="w8a8-int8")
    assert default.weights.observer == "memoryless_minmax"  # the preset as it was: min-max
    assert QuantizeParams(stage="quantize", scheme="w8a8-int8", kv_cache="fp8").needs_calibration


@pytest.mark.parametrize("stage, tolerance", [
    ({"scheme": "w8a8-int8-static", "calibration": SMALL_CALIBRATION}, 0.2),
    ({"scheme": "w8a8-int8", "observer": "mse"}, 0.12),
], ids=["static", "mse"])
def test_w8a8_variants_on_tiny_model(stage, tolerance, tiny_llama_dir, tmp_path):
    out = tmp_path / "out"
    pipeline.apply_recipe(recipe_for(tiny_llama_dir, [{"stage": "quantize", **stage}]), "q.yaml", out_dir=out)
    config = json.loads((out / "model" / "config.json").read_text())
    group = config["quantization_config"]["config_groups"]["group_0"]
    tensors = header(out / "model" / "model.safetensors")
    if stage["scheme"] == "w8a8-int8-static":
        assert (group["input_activations"]["strategy"], group["input_activations"]["dynamic"]) == ("tensor", False)
        assert sum(k.endswith("input_scale") for k in tensors) == 7 * config["num_hidden_layers"]
    else:
        assert group["weights"]["observer"] == "memoryless_mse"
    error = logits(out / "model") - logits(tiny_llama_dir)
    assert float(error.norm() / logits(tiny_llama_dir).norm()) < tolerance


@pytest.mark.parametrize("stage, message", [
    ({"stage": "quantize", "scheme": "w8a8-int8", "kv_cache": "fp4"}, r"stages\[0\]\.kv_cache: Input should be 'fp8' or 'int8'"),
    ({"stage": "quantize", "scheme": "nf4", "backend": "bitsandbytes", "kv_cache": "fp8"},
     r"stages\[0\]\.kv_cache: kv_cache fp8 needs backend llmcompressor"),
    ({"stage": "quantize", "scheme": "w8a8-int8", "observer": "percentile"}, r"stages\[0\]\.observer: Input should be"),
    ({"stage": "context", "max_position_embeddings": 0}, r"stages\[0\]\.max_position_embeddings: Input should be greater"),
    ({"stage": "context", "fraction": 1.5}, r"stages\[0\]\.fraction: Input should be less than or equal to 1"),
    ({"stage": "context"}, r"stages\[0\]: .*give exactly one of max_position_embeddings"),
    ({"stage": "context", "fraction": 0.5, "max_position_embeddings": 128}, r"give exactly one of"),
])
def test_bad_lever_values_fail_in_one_line(tmp_path, stage, message):
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps({"name": "bad", "stages": [stage]}))
    with pytest.raises(UserError, match=message) as info:
        load_recipe(path)
    assert str(info.value).startswith(f"{path}: stages[0]") and "\n" not in str(info.value)


# --- context ------------------------------------------------------------------------------------------------------

def test_context_above_the_source_is_refused_before_weights_load(tiny_llama_dir, monkeypatch):
    monkeypatch.setattr(pipeline, "load_model", lambda *a, **k: pytest.fail("weights loaded"))
    recipe = recipe_for(tiny_llama_dir, [{"stage": "context", "max_position_embeddings": 4096}])
    with pytest.raises(UserError, match=r"r\.yaml: stages\[0\] \(context\): max_position_embeddings 4096 > the "
                                        r"source's 2048: a context can only shrink"):
        check_against_config(recipe, AutoConfig.from_pretrained(tiny_llama_dir), "r.yaml", tiny_llama_dir)


def test_context_stage_shortens_the_config_and_leaves_the_model_as_it_was(tiny_dir, tmp_path):
    out = tmp_path / "out"
    report = pipeline.apply_recipe(recipe_for(tiny_dir, [{"stage": "context", "fraction": 0.25}]), "c.yaml",
                                   out_dir=out)
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["max_position_embeddings"] == 512
    assert report["stages"][0]["result"]["source_max_position_embeddings"] == 2048
    # the default suite's retrieval prompts (byte tokens) never fit the tiny model's 2048 positions: a warning
    [warning] = report["warnings"]
    assert warning.startswith("stages[0] (context): retrieval: its longest prompt") and "already over" in warning
    assert torch.equal(logits(out / "model"), logits(tiny_dir))


@pytest.mark.parametrize("scaling, pinned", [
    ({"rope_type": "yarn", "factor": 4.0}, True),
    ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024}, False),
    ({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 512}, False),
    ({"rope_type": "dynamic", "factor": 2.0}, False),
    (None, False),
], ids=["yarn", "yarn-original", "llama3", "dynamic", "none"])
def test_context_keeps_the_rope_frequencies(scaling, pinned):
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_attention_heads=4, max_position_embeddings=2048,
                         rope_scaling=scaling)
    planned = ContextParams(stage="context", max_position_embeddings=512).planned_config(config)
    assert planned.max_position_embeddings == 512 and config.max_position_embeddings == 2048
    assert (planned.rope_scaling or {}).get("original_max_position_embeddings") == (
        2048 if pinned else (scaling or {}).get("original_max_position_embeddings"))
    before, after = LlamaRotaryEmbedding(config), LlamaRotaryEmbedding(planned)
    positions = torch.arange(512)[None]
    x = torch.zeros(1, 512, 16)
    for got, want in zip(after(x, positions), before(x, positions)):
        assert torch.allclose(got, want, atol=1e-6)  # cos and sin over the whole new context


def test_context_refuses_longrope():
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_attention_heads=4, max_position_embeddings=2048,
                         rope_scaling={"rope_type": "longrope", "short_factor": [1.0] * 8, "long_factor": [2.0] * 8,
                                       "original_max_position_embeddings": 1024})
    with pytest.raises(ValueError, match="longrope: its attention factor follows"):
        ContextParams(stage="context", max_position_embeddings=1024).check_config(config)


def test_context_checks_the_suite_prompts():
    params = ContextParams(stage="context", max_position_embeddings=1000, min_answer_tokens=16)
    source = LlamaConfig(max_position_embeddings=2048)
    config = params.planned_config(source)
    assert params.check_prompts(source, config, lambda: [TaskPrompts("ko_mc", 500, 8)]) == []
    [warning] = params.check_prompts(source, config, lambda: [TaskPrompts("ko_longrag", 980, 32)])
    assert warning.startswith("ko_longrag: its longest prompt (980 tokens) leaves 20 of its 32 answer tokens")
    with pytest.raises(ValueError, match=r"cannot hold ko_longrag's longest prompt \(990 tokens\) plus "
                                         r"min_answer_tokens 16; use at least 1006"):
        params.check_prompts(source, config, lambda: [TaskPrompts("ko_longrag", 990, 32)])
    # a context left as it was is not this stage's doing: nothing to check, the prompts are not even read
    capped = ContextParams(stage="context", at_most=16384)
    assert capped.length_for(source) == 2048 and ContextParams(stage="context", at_most=1024).length_for(source) == 1024
    assert capped.check_prompts(source, capped.planned_config(source), lambda: pytest.fail("read")) == []


def test_context_too_short_for_the_recipe_suite_is_refused_with_the_task_named(tiny_llama_dir, tmp_path):
    import re

    suite = tmp_path / "mc.yaml"  # Korean multiple choice: short generative prompts the tiny model holds
    suite.write_text("name: mc\ntasks:\n  - {task: ko_mc, metric: exact_match, limit: 20}\n")
    config = AutoConfig.from_pretrained(tiny_llama_dir)

    def check(**context):
        recipe = recipe_for(tiny_llama_dir, [{"stage": "context", **context}], suite=str(suite))
        return check_against_config(recipe, config, "c.yaml", tiny_llama_dir)

    with pytest.raises(UserError, match=r"^c\.yaml: stages\[0\] \(context\): max_position_embeddings 64 cannot hold "
                                        r"ko_mc's longest prompt \(\d+ tokens\) plus min_answer_tokens 32; use at least"):
        check(max_position_embeddings=64)
    with pytest.raises(UserError) as info:
        check(max_position_embeddings=64)
    longest = int(re.search(r"longest prompt \((\d+) tokens\)", str(info.value)).group(1))
    assert 64 < longest < 2048
    assert check(max_position_embeddings=longest + 32) == []  # ko_mc's 8 answer tokens fit
    [warning] = check(max_position_embeddings=longest + 5, min_answer_tokens=4)
    assert warning == (f"stages[0] (context): ko_mc: its longest prompt ({longest} tokens) leaves 5 of its 8 answer "
                       "tokens; lm-eval cuts that prompt's start to keep the budget")
