"""`quantize` on tiny Llama and Exaone4: stored dtypes, quantization_config, reload, logits vs the source."""

import json
import struct

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, LlamaConfig

import compressor.pipeline as pipeline
from compressor.core.errors import UserError
from compressor.export.target_rules import RULES, ModelDir
from compressor.models.adapters import ADAPTERS
from compressor.quantize.schemes import SCHEMES
from compressor.quantize.stage import QuantizeParams
from compressor.recipe import parse_recipe

SMALL_CALIBRATION = {"samples": 4, "seq_len": 64}

# Relative error ||logits - source logits|| / ||source logits|| on 2 x 64 tokens of held-out text. The tiny random
# models are far more fragile than trained ones (weights ~N(0, 0.15); a bf16 cast alone gives 0.014-0.022).
# Measured: w8a8 0.035-0.056, fp8 0.14-0.22, w8a16 0.026-0.039, w4a16 (group 32, GPTQ) 0.27-0.36,
# llm-int8 0.033-0.055, nf4 0.38-0.50. Every Linear scaled by 1.5 gives 0.90 on Llama but only 0.11 on
# EXAONE-4 (its post-norms renormalise each block): the exact storage test below checks the scales.
CASES = {
    "w8a8-rtn": ({"scheme": "w8a8-int8"}, 0.12),
    "w8a8-sq-gptq": ({"scheme": "w8a8-int8", "method": "gptq", "smoothquant": 0.8,
                      "calibration": SMALL_CALIBRATION}, 0.12),
    "fp8-dynamic": ({"scheme": "fp8-dynamic"}, 0.35),
    "fp8-static": ({"scheme": "fp8", "calibration": SMALL_CALIBRATION}, 0.35),
    "w8a16-channel": ({"scheme": "w8a16"}, 0.08),
    "w4a16-g32-gptq": ({"scheme": "w4a16", "group_size": 32, "method": "gptq", "calibration": SMALL_CALIBRATION}, 0.5),
    "llm-int8": ({"scheme": "llm-int8", "backend": "bitsandbytes"}, 0.12),
    "nf4": ({"scheme": "nf4", "backend": "bitsandbytes"}, 0.7),
}
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def recipe_for(model_dir, stages):
    return parse_recipe({"name": "q", "model": str(model_dir), "stages": stages, "eval": {"enabled": False}})


def header(path) -> dict:
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return {k: v for k, v in json.loads(handle.read(length)).items() if k != "__metadata__"}


def logits(folder, ids, **kwargs):
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs).eval()
    with torch.no_grad():
        return model(ids).logits.float()


def relative_error(got, ref) -> float:
    return float((got - ref).norm() / ref.norm())


@pytest.fixture(scope="module")
def token_ids():
    """2 x 64 tokens of held-out text (corpus eval split; calibration uses the calibration split)."""
    from compressor.data.corpus import load_corpus
    from compressor.models.tiny import byte_tokenizer

    tokenizer = byte_tokenizer()
    return torch.tensor([tokenizer(doc)["input_ids"][:64] for doc in load_corpus("eval", limit=2)])


@pytest.mark.parametrize("case", CASES, ids=str)
def test_scheme_on_tiny_model(case, tiny_dir, tmp_path, token_ids):
    stage, tolerance = CASES[case]
    scheme = SCHEMES[stage["scheme"]]
    out = tmp_path / "out"
    report = pipeline.apply_recipe(recipe_for(tiny_dir, [{"stage": "quantize", **stage}]), "q.yaml", out_dir=out)
    folder = out / "model"
    tensors = header(folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())

    # every decoder Linear stored in the scheme's dtype; embeddings in 16-bit float; tied: no lm_head
    weight_keys = [k for k in tensors if k.rsplit(".", 2)[-2] in LINEARS and k.endswith((".weight", ".weight_packed"))]
    assert len(weight_keys) == 7 * config["num_hidden_layers"]
    assert {tensors[k]["dtype"] for k in weight_keys} == set(scheme.stored_weight_dtypes)
    assert tensors["model.embed_tokens.weight"]["dtype"] in ("BF16", "F16")
    assert config["tie_word_embeddings"] and "lm_head.weight" not in tensors
    model_dir = ModelDir(folder, config)
    rules = ["embeddings_not_quantized", "tied_embeddings_consistent"]
    rules += [] if stage["scheme"] == "nf4" else ["uniform_layer_shapes"]  # nf4 stores flat byte tensors
    for rule in rules:
        assert RULES[rule](model_dir, None) == [], rule

    qc = config["quantization_config"]
    if scheme.backend == "llmcompressor":
        assert qc["quant_method"] == "compressed-tensors" and qc["quantization_status"] == "compressed"
        assert qc["ignore"] == ["lm_head"]
        assert not (folder / "recipe.yaml").exists()  # llm-compressor's own (unsafe YAML) stays out
        modifiers = report["stages"][0]["result"]["modifiers"]
        assert [m["modifier"] for m in modifiers][-1] == ("GPTQModifier" if stage.get("method") == "gptq"
                                                          else "QuantizationModifier")
        assert ("SmoothQuantModifier" in modifiers[0]["modifier"]) == ("smoothquant" in stage)
    else:
        assert qc["quant_method"] == "bitsandbytes" and qc["llm_int8_skip_modules"] == ["lm_head"]
        assert "vLLM" in report["stages"][0]["result"]["note"]

    # reloads with the stock loader; logits close to the unquantized source
    reloaded = logits(folder, token_ids, dtype=torch.float32) if scheme.backend == "llmcompressor" \
        else logits(folder, token_ids)
    error = relative_error(reloaded, logits(tiny_dir, token_ids, dtype=torch.float32))
    print(f"\n{case}/{tiny_dir.name}: relative logits error {error:.4f} (tolerance {tolerance})")
    assert error < tolerance


@pytest.mark.parametrize("scheme", ["w8a8-int8", "w8a16"])
def test_round_to_nearest_storage_is_exact(scheme, tiny_dir, tmp_path):
    """int8 q and scale s per output channel: s = max|w| / 127.5 rounded to bf16 (levels -128..127), and each
    fp32 source weight rounded once against the stored scale: q == clamp(round(w / s), -128, 127) exactly
    (rounding the weights to bf16 first would move some of them to a neighbouring level)."""
    out = tmp_path / "out"
    pipeline.apply_recipe(recipe_for(tiny_dir, [{"stage": "quantize", "scheme": scheme, "dtype": "bfloat16"}]),
                          "q.yaml", out_dir=out)
    with safe_open(tiny_dir / "model.safetensors", "pt") as src, \
            safe_open(out / "model" / "model.safetensors", "pt") as dst:
        for name in [k for k in src.keys() if k.rsplit(".", 2)[-2] in LINEARS]:
            w = src.get_tensor(name).float()
            scale = dst.get_tensor(name + "_scale").float()
            if scheme == "w8a8-int8":
                q = dst.get_tensor(name).float()
            else:  # pack-quantized: 4 values per int32, unpacked with compressed-tensors' own inverse
                from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32

                packed = dst.get_tensor(name.removesuffix("weight") + "weight_packed")
                q = unpack_from_int32(packed, 8, w.shape).float()
            assert scale.shape == (w.shape[0], 1)
            assert torch.equal(scale, (w.abs().amax(1, keepdim=True) / 127.5).bfloat16().float()), name
            assert torch.equal(q, torch.round(w / scale).clamp(-128, 127)), name


@pytest.mark.parametrize("family", ["llama", "exaone4"])
def test_smoothquant_mappings_preserve_the_function(family, tiny_llama_dir, tiny_exaone4_dir, token_ids):
    """The adapter's mappings pair layers whose product is unchanged by the smoothing scales (before rounding)."""
    from llmcompressor import oneshot

    from compressor.quantize.llmcompressor_backend import calibration_dataset
    from compressor.quantize.calibration_data import QuantCalibration
    from compressor.quantize.quiet import quiet_loguru

    folder = {"llama": tiny_llama_dir, "exaone4": tiny_exaone4_dir}[family]
    adapter = ADAPTERS[family]
    from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier
    from transformers import AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        reference = model(token_ids).logits
    mappings = [[list(balance), smooth] for balance, smooth in adapter.smoothquant_mappings]
    with quiet_loguru():
        model = oneshot(model=model, tokenizer=tokenizer, recipe=[SmoothQuantModifier(smoothing_strength=0.8, mappings=mappings)],
                        dataset=calibration_dataset(tokenizer, QuantCalibration(**SMALL_CALIBRATION)),
                        num_calibration_samples=4, shuffle_calibration_samples=False)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    smoothed = {"llama": ("input_layernorm", "post_attention_layernorm", "q_proj", "k_proj", "v_proj", "gate_proj",
                          "up_proj"),
                "exaone4": ("up_proj", "down_proj")}[family]
    assert {n.split(".")[-2] for n in changed} == set(smoothed)
    with torch.no_grad():
        assert torch.allclose(model(token_ids).logits, reference, atol=1e-3, rtol=1e-4)


def test_impossible_group_size_is_rejected_before_loading(tmp_path, tiny_llama_dir, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the recipe was checked")

    monkeypatch.setattr(pipeline, "load_model", no_loading)
    recipe = recipe_for(tiny_llama_dir, [{"stage": "quantize", "scheme": "w4a16", "group_size": 128}])
    with pytest.raises(UserError, match=r"^q\.yaml: stages\[0\] \(quantize\): group_size 128 does not divide the input "
                                        r"width of every quantized layer \(q_proj/k_proj/v_proj/gate_proj/up_proj "
                                        r"\(hidden_size\) = 64, o_proj \(num_attention_heads x head_dim\) = 64\); "
                                        r"use a divisor of 64, 128 or leave group_size unset"):
        pipeline.apply_recipe(recipe, "q.yaml", out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_group_size_rule_on_smollm2_widths():
    smollm2 = LlamaConfig(hidden_size=576, intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3)
    params = QuantizeParams(stage="quantize", scheme="w8a16", group_size=128)
    with pytest.raises(ValueError, match=r"group_size 128 does not divide .* = 576.*use a divisor of 576, 1536"):
        params.check_config(smollm2)
    QuantizeParams(stage="quantize", scheme="w8a16", group_size=64).check_config(smollm2)
    QuantizeParams(stage="quantize", scheme="w4a16").check_config(smollm2)  # per channel always applies


@pytest.mark.parametrize("stage, message", [
    ({"scheme": "fp8", "backend": "bitsandbytes"},
     r"stages\[0\]\.backend: scheme 'fp8' is not available with backend bitsandbytes \(it has: llm-int8, nf4\)$"),
    ({"scheme": "nf4"}, r"\.backend: scheme 'nf4' is not available with backend llmcompressor .*nf4 needs backend: bitsandbytes"),
    ({"scheme": "w8a8-int8", "group_size": 64}, r"\.group_size: group_size applies to w8a16 and w4a16, not w8a8-int8"),
    ({"scheme": "w8a16", "smoothquant": 0.5}, r"\.smoothquant: SmoothQuant eases activation quantization; w8a16 keeps"),
    ({"scheme": "llm-int8", "backend": "bitsandbytes", "method": "gptq"},
     r"\.method: backend bitsandbytes quantizes round-to-nearest only"),
    ({"scheme": "nf4", "backend": "bitsandbytes", "ignore": ["re:.*mlp.*"]}, r"\.ignore: backend bitsandbytes takes module"),
    ({"scheme": "w8a8-int8", "smoothquant": 1.5}, r"\.smoothquant: Input should be less than 1"),
    ({"scheme": "int3"}, r"\.scheme: Input should be 'w8a8-int8', 'w8a8-int8-static', 'fp8-dynamic'"),
    ({"scheme": "fp8", "calibration": {"split": "eval", "suite": "quick"}},
     r"\.calibration: give either `split` / `corpus` \(a local corpus\) or `suite`"),
])
def test_bad_quantize_parameters_fail_in_one_line(tmp_path, stage, message):
    from compressor.recipe import load_recipe

    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps({"name": "bad", "stages": [{"stage": "quantize", **stage}]}))
    with pytest.raises(UserError, match=message) as info:
        load_recipe(path)
    assert str(info.value).startswith(f"{path}: stages[0].") and "\n" not in str(info.value)


def test_missing_backend_and_calibration_source_are_reported_before_work(monkeypatch):
    import importlib.util

    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_attention_heads=4)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(ValueError, match=r"backend bitsandbytes is not installed: pip install bitsandbytes==0\.50\.2"):
        QuantizeParams(stage="quantize", scheme="nf4", backend="bitsandbytes").check_config(config)
    with pytest.raises(ValueError, match=r"calibration: .*no such suite"):
        QuantizeParams(stage="quantize", scheme="fp8", calibration={"suite": "nope"}).check_config(config)
    with pytest.raises(ValueError, match=r"calibration.split\n.*unknown corpus split 'nope'"):  # when parsed
        QuantizeParams(stage="quantize", scheme="fp8", calibration={"split": "nope"})


def test_cli_rejects_fp8_for_bitsandbytes(monkeypatch, capsys, tmp_path):
    from cli_runner import run_cli

    path = tmp_path / "bnb-fp8.yaml"
    path.write_text("name: bnb-fp8\nstages:\n  - stage: quantize\n    scheme: fp8\n    backend: bitsandbytes\n")
    code, out, err = run_cli(monkeypatch, capsys, "apply", str(path))
    assert code == 2 and "Traceback" not in err
    assert err.strip() == (f"error: {path}: stages[0].backend: scheme 'fp8' is not available with backend "
                           f"bitsandbytes (it has: llm-int8, nf4)")


def test_w8a8_output_evaluates_in_the_torch_runtime(tiny_llama_dir, tmp_path):
    from compressor.evaluate.output import evaluate_output
    from compressor.evaluate.spec import EvalSpec

    out = tmp_path / "out"
    pipeline.apply_recipe(recipe_for(tiny_llama_dir, [{"stage": "quantize", "scheme": "w8a8-int8"}]), "q.yaml", out_dir=out)
    spec = EvalSpec(baseline=False, suite="quick", limit=2, latency={"prompt_tokens": 16, "new_tokens": 4, "runs": 1})
    measured = evaluate_output(out, spec, device="cpu")["eval"]["model"]
    assert measured["dtype"] == "bfloat16" and 0 <= measured["perf"] <= 1 and measured["tpt_ms"] > 0
    assert set(measured["tasks"]) == {"minimal_pairs", "retrieval", "corpus_ppl"}


def test_nf4_output_passes_the_transformers_check(tiny_exaone4_dir, tmp_path):
    """bitsandbytes is for transformers users: the stock loader in a fresh process reproduces our greedy output."""
    from compressor.export.check import check_output

    out = tmp_path / "out"
    stage = {"stage": "quantize", "scheme": "nf4", "backend": "bitsandbytes"}
    pipeline.apply_recipe(recipe_for(tiny_exaone4_dir, [stage]), "q.yaml", out_dir=out)
    checked = check_output(out, "transformers", max_tokens=8)
    assert checked["passed"], checked["reasons"]
    assert checked["runtime_info"]["dtype"] == checked["reference"]["dtype"] == "bfloat16"
    assert checked["summary"]["agreement"] == 1.0 and checked["summary"]["logits_max_abs_diff"] == 0.0


@pytest.mark.parametrize("runtime, quantized, expected", [("transformers", True, "auto"), ("vllm", True, "float32"),
                                                          ("transformers", False, "float32")])
def test_check_reference_precision(runtime, quantized, expected, tmp_path, monkeypatch):
    """Quantized folders in transformers: reference in the stored dtype (the runtime's own rounding); else fp32."""
    from compressor.export import check

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "compressed-tensors"}}
                                                   if quantized else {}))
    seen = {}

    def fake_reference(path, prompts, max_tokens, dtype="float32", device=None):
        seen["dtype"] = dtype
        raise UserError("stop here")

    monkeypatch.setattr(check, "reference", fake_reference)
    monkeypatch.setattr(check, "check_model_folder", lambda folder: None)  # a config-only folder
    with pytest.raises(UserError, match="stop here"):
        check.check_output(tmp_path, runtime)
    assert seen["dtype"] == expected


def test_vllm_failure_names_the_root_cause():
    """What vLLM's CPU build says about formats it cannot serve (log lines as it printed them, shortened)."""
    from compressor.runtimes.vllm_runtime import _last_error

    worker = "(Worker pid=26601) ERROR 11-24 09:52:04 [multiproc_executor.py:953] "
    fp8_static = "\n".join([
        worker + "Traceback (most recent call last):",
        worker + "RuntimeError: _C::static_scaled_fp8_quant() expected at most 0 argument(s) but received 4 argument(s).",
        "(EngineCore pid=26581) ERROR 11-24 09:52:08 [core.py:1510] Exception: WorkerProc initialization failed due "
        "to an exception in a background process. See stack trace for root cause.",
        "    raise RuntimeError(",
        "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {'EngineCore': 1}"])
    assert _last_error(fp8_static) == ("RuntimeError: _C::static_scaled_fp8_quant() expected at most 0 argument(s) "
                                       "but received 4 argument(s).")
    w8a16 = "\n".join([worker + "ValueError: Failed to find a kernel that can implement the WNA16 linear layer. Reasons: ",
                       worker + " CPUWNA16LinearKernel cannot implement due to: Quant type (uint8b128) not supported",
                       "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}"])
    assert _last_error(w8a16).endswith("Reasons: CPUWNA16LinearKernel cannot implement due to: Quant type (uint8b128) "
                                       "not supported")
    bnb = "\n".join(["pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig",
                     "  Value error, Unknown quantization method: bitsandbytes. Must be one of ['awq']"])
    assert _last_error(bnb).endswith("for ModelConfig Value error, Unknown quantization method: bitsandbytes. "
                                     "Must be one of ['awq']")
