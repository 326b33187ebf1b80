"""lg-aimers target: the quantization_config rewritten for compressed-tensors 0.13.0, proven in that version.

The proof runs in .venv-ct013 (`make install-ct013`: compressed-tensors 0.13.0, transformers 4.57.3, the
server's pair): the config as written by compressed-tensors 0.16 is rejected there, the packaged one
validates and the folder loads and runs.
"""

import copy
import json
import subprocess
import zipfile

import pytest
import torch
from transformers import AutoModelForCausalLM

import compressor.pipeline as pipeline
from compressor.export.package import package
from compressor.export.quantization_config import rewrite_quantization_config
from compressor.export.targets import QuantizationArgsRewrites, load_target
from repo import REPO_ROOT
from compressor.recipe import parse_recipe

CT013_PYTHON = REPO_ROOT / ".venv-ct013" / "bin" / "python"
needs_ct013 = pytest.mark.skipif(not CT013_PYTHON.is_file(), reason="no .venv-ct013: run `make install-ct013`")

# Runs in .venv-ct013: validate quantization_config the way vLLM 0.14.1 / transformers parse it, then load.
CT013_WORKER = r'''
import json, sys
import compressed_tensors, torch, transformers
from compressed_tensors.quantization import QuantizationConfig

folder, ids = sys.argv[1], json.loads(sys.argv[2])
result = {"compressed_tensors": compressed_tensors.__version__, "transformers": transformers.__version__}
try:
    QuantizationConfig.model_validate(json.load(open(folder + "/config.json"))["quantization_config"])
    result["valid"] = True
except Exception as error:
    result["valid"], result["error"] = False, " ".join(str(error).split())
if result["valid"]:
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        result["logits"] = model(torch.tensor(ids)).logits.tolist()
print(json.dumps(result))
'''

GPTQ_W8A8 = {"stage": "quantize", "scheme": "w8a8-int8", "method": "gptq", "smoothquant": 0.8,
             "calibration": {"samples": 4, "seq_len": 64}}
TOKEN_IDS = [[40, 104, 101, 32, 99, 97, 112, 105, 116, 97, 108, 32, 111, 102]]


def test_rewrite_drops_only_what_does_not_change_the_meaning():
    qc = {"config_groups": {
        "group_0": {"targets": ["Linear"],
                    "weights": {"strategy": "channel", "actorder": "static", "scale_dtype": None, "zp_dtype": None},
                    "input_activations": {"strategy": "token", "dynamic": True, "scale_dtype": None}},
        "group_1": {"targets": ["re:.*down_proj"],
                    "weights": {"strategy": "group", "group_size": 32, "actorder": "group", "scale_dtype": "bf16"}}},
        "kv_cache_scheme": {"strategy": "tensor", "zp_dtype": None}, "ignore": ["lm_head"]}
    before = copy.deepcopy(qc)
    rules = QuantizationArgsRewrites(drop_null=["scale_dtype", "zp_dtype"], drop_unless={"actorder": {"strategy": "group"}})
    out, changes = rewrite_quantization_config(qc, rules)
    assert qc == before  # the input is untouched
    assert out["config_groups"]["group_0"]["weights"] == {"strategy": "channel"}
    assert out["config_groups"]["group_0"]["input_activations"] == {"strategy": "token", "dynamic": True}
    assert out["config_groups"]["group_1"]["weights"] == before["config_groups"]["group_1"]["weights"]
    assert out["kv_cache_scheme"] == {"strategy": "tensor"} and out["ignore"] == ["lm_head"]
    assert "quantization_config.config_groups.group_0.weights: dropped actorder: 'static' (strategy 'channel')" in changes
    assert len(changes) == 5


def test_lg_aimers_target_declares_the_rewrite():
    rules = load_target(REPO_ROOT / "export/targets/lg-aimers.yaml").config.quantization_args
    assert rules.drop_unless == {"actorder": {"strategy": "group"}}
    assert set(rules.drop_null) == {"scale_dtype", "zp_dtype"}


def _ct013(folder) -> dict:
    done = subprocess.run([str(CT013_PYTHON), "-c", CT013_WORKER, str(folder), json.dumps(TOKEN_IDS)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def packaged_gptq_w8a8(tmp_path_factory, tiny_exaone4_dir):
    out = tmp_path_factory.mktemp("lg") / "w8a8-gptq"
    recipe = parse_recipe({"name": "w8a8-gptq", "model": str(tiny_exaone4_dir), "stages": [GPTQ_W8A8],
                           "eval": {"enabled": False}})
    pipeline.apply_recipe(recipe, "w8a8-gptq.yaml", out_dir=out)
    result = package(out, load_target(REPO_ROOT / "export/targets/lg-aimers.yaml"))
    unzipped = out / "unzipped"
    with zipfile.ZipFile(result["zip"]) as zf:
        zf.extractall(unzipped)
    return out, unzipped / "model", result


def test_package_rewrites_the_quantization_config(packaged_gptq_w8a8):
    out, packaged, result = packaged_gptq_w8a8
    written = json.loads((out / "model" / "config.json").read_text())["quantization_config"]
    shipped = json.loads((packaged / "config.json").read_text())["quantization_config"]
    assert written["config_groups"]["group_0"]["weights"]["actorder"] == "static"  # GPTQ's default, per channel
    weights = shipped["config_groups"]["group_0"]["weights"]
    assert weights["strategy"] == "channel" and "actorder" not in weights and "scale_dtype" not in weights
    assert any("dropped actorder: 'static' (strategy 'channel')" in r for r in result["rewrites"])
    assert result["runtime_checks"][0]["runtime"] == "transformers" and result["runtime_checks"][0]["passed"]
    # only keys the rules name are dropped; everything else is shipped as written
    for group in ("weights", "input_activations"):
        before, after = written["config_groups"]["group_0"][group], shipped["config_groups"]["group_0"][group]
        assert after.items() <= before.items() and set(before) - set(after) <= {"actorder", "scale_dtype", "zp_dtype"}
    assert {k: v for k, v in shipped.items() if k != "config_groups"} == \
        {k: v for k, v in written.items() if k != "config_groups"}


@needs_ct013
def test_compressed_tensors_0_13_rejects_the_written_config_and_loads_the_packaged_one(packaged_gptq_w8a8):
    out, packaged, _ = packaged_gptq_w8a8
    as_written = _ct013(out / "model")
    assert as_written["compressed_tensors"] == "0.13.0" and as_written["transformers"] == "4.57.3"
    assert not as_written["valid"] and "activation ordering" in as_written["error"]

    shipped = _ct013(packaged)
    assert shipped["valid"], shipped.get("error")
    here = AutoModelForCausalLM.from_pretrained(out / "model", dtype=torch.float32).eval()
    with torch.no_grad():
        expected = here(torch.tensor(TOKEN_IDS)).logits
    got = torch.tensor(shipped["logits"])
    assert float((got - expected).norm() / expected.norm()) < 1e-3  # same weights, same emulation
