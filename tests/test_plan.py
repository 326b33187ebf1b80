"""`compressor plan` and the plan `apply` runs first: shapes from configs, peaks against measured ones, refusals."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from cli_runner import assert_one_line_error, run_cli
from compressor.models.shape import ModelShape
from compressor.models.tiny import save_tiny, tiny_exaone4_config, tiny_llama_config, tiny_model
from compressor.plan.memory import Plan, Step
from compressor.plan.planner import plan_recipe, refusal, vllm_plan
from compressor.recipe import parse_recipe

CONFIGS = Path(__file__).parent / "data" / "configs"


def public_config(name: str):
    data = {k: v for k, v in json.loads((CONFIGS / f"{name}.json").read_text()).items() if not k.startswith("_")}
    return AutoConfig.for_model(**data)


def recipe(stages, model="builtin:smollm2-135m", **extra):
    return parse_recipe({"name": "planned", "model": model, "stages": stages, **extra})


@pytest.mark.parametrize("build", [tiny_llama_config, tiny_exaone4_config])
def test_shape_counts_the_real_models_parameters(build):
    config = build()
    model = tiny_model(config)
    shape = ModelShape.from_config(config)
    assert shape.params == sum(p.numel() for p in model.parameters())
    assert shape.num_layers == config.num_hidden_layers and shape.lm_head_params == 0  # tied
    assert sum(shape.layer_params) + shape.embedding_params + config.hidden_size == shape.params  # + final norm


@pytest.mark.parametrize("name,params", [("llama-3.1-8b", 8_030_261_248), ("llama-3.1-70b", 70_553_706_496)])
def test_public_llama_configs_give_the_published_parameter_counts(name, params):
    shape = ModelShape.from_config(public_config(name))
    assert shape.params == params
    assert shape.weights_bytes == 2 * params and shape.dtype == "bfloat16"


@pytest.mark.parametrize("name,billions", [("exaone-4.0-1.2b", 1.28), ("exaone-4.0-32b", 32.0)])
def test_public_exaone_configs_give_the_published_sizes(name, billions):
    shape = ModelShape.from_config(public_config(name))
    assert shape.params / 1e9 == pytest.approx(billions, rel=0.01)


def test_planned_shapes_follow_the_stages(tiny_llama_dir, tmp_path):
    """The plan's final shape is the written model's (drop 1 layer, prune the MLP, cast)."""
    from compressor.pipeline import apply_recipe
    from compressor.plan.memory import shapes_through

    stages = [{"stage": "drop_layers", "layers": [1]}, {"stage": "prune_mlp", "intermediate_size": 64},
              {"stage": "cast", "dtype": "float16"}]
    planned = recipe(stages, model=str(tiny_llama_dir))
    final = shapes_through(planned, AutoConfig.from_pretrained(tiny_llama_dir))[-1]
    apply_recipe(planned, "planned", tmp_path / "out", evaluate=False)
    written = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "model")
    assert final.params == sum(p.numel() for p in written.parameters())
    assert final.dtype == "float16" and final.num_layers == 3


def test_every_gallery_recipe_plans_on_the_bundled_config():
    from compressor.core.resources import recipes_dir
    from compressor.models.sources import config_only
    from compressor.recipe import load_recipe

    config, folder = config_only("builtin:smollm2-135m")
    for path in sorted(recipes_dir().glob("*.yaml")):
        planned = load_recipe(path)
        plan = plan_recipe(planned, config, torch.device("cpu"), folder, memory=24 * 10**9)
        assert plan.steps[0].name == "load" and plan.steps[-1].peak > 0, path.name
        assert len(plan.steps) >= len(planned.stages) + 2, path.name


def _peak_rss_mb(args: list[str], tmp_path: Path) -> float:
    """The peak resident set of `compressor ARGS` in a child, from its own VmHWM at exit (wait4's ru_maxrss would
    count the forking pytest process's size: a child inherits its parent's high-water mark)."""
    status = tmp_path / "status.txt"
    code = ("import atexit, sys; out = sys.argv[1]; "
            "atexit.register(lambda: open(out, 'w').write(open('/proc/self/status').read())); "
            "sys.argv = ['compressor', *sys.argv[2:]]; from compressor.cli.app import main; main()")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code, str(status), *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


@pytest.mark.parametrize("stages", [
    [{"stage": "drop_layers", "count": 2, "by": "angular", "calibration": {"samples": 16, "seq_len": 256}},
     {"stage": "cast", "dtype": "float16"}],
    [{"stage": "drop_layers", "count": 2, "from": "top"},
     {"stage": "heal", "method": "lora", "steps": 2, "batch": 2, "seq_len": 128, "holdout": 2}],
], ids=["ranked-drop-fp16", "lora-heal"])
def test_planned_peak_is_within_20_percent_of_the_measured_one(tmp_path, stages):
    """A model big enough for weights to matter beside the process (~90M params, 360 MB in fp32)."""
    source = save_tiny("llama", tmp_path / "source", layers=6, hidden=1024, heads=8, kv_heads=4, ffn=4096)
    data = {"name": "measured", "model": str(source), "stages": stages}
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps(data))
    plan = plan_recipe(parse_recipe(data), AutoConfig.from_pretrained(source), torch.device("cpu"), source,
                       evaluate=False)
    measured = _peak_rss_mb(["apply", str(path), "--no-eval", "--out", str(tmp_path / "out")], tmp_path)
    predicted = plan.peak.peak / 2**20
    assert abs(predicted - measured) / measured <= 0.20, (predicted, measured)


def test_apply_refuses_a_plan_that_does_not_fit_before_loading(monkeypatch, capsys, tiny_llama_dir, tmp_path):
    import compressor.pipeline as pipeline

    def loading(*args, **kwargs):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(pipeline, "load_model", loading)
    monkeypatch.setattr(pipeline, "content_hash", loading)
    path = tmp_path / "r.yaml"
    path.write_text(json.dumps({"name": "big", "model": str(tiny_llama_dir), "stages": [{"stage": "cast",
                                                                                          "dtype": "float16"}]}))
    code, _, err = run_cli(monkeypatch, capsys, "apply", str(path), "--no-eval", "--out", str(tmp_path / "out"),
                           "--memory", "50MB")
    assert_one_line_error(code, err)
    assert "needs ~" in err and "0.1 GB are available" in err and "compressor plan" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["lots", "-1GB", "0"])
def test_bad_memory_values_are_one_line_errors(monkeypatch, capsys, value):
    code, _, err = run_cli(monkeypatch, capsys, "plan", "fp16", "--memory", value)
    assert_one_line_error(code, err)
    assert "--memory" in err and ("is not a size" in err or "more than 0" in err)


def test_full_healing_of_exaone_1_2b_does_not_fit_an_l4_and_lora_does(monkeypatch, capsys, tmp_path):
    """Planned from the published config alone: AdamW on ~1.07B parameters needs ~17 GB before the teacher."""
    folder = tmp_path / "exaone"
    folder.mkdir()
    (folder / "config.json").write_text((CONFIGS / "exaone-4.0-1.2b.json").read_text())  # a config, no weights
    code, out, _ = run_cli(monkeypatch, capsys, "plan", "minitron", "--model", str(folder), "--device", "cuda",
                           "--memory", "24GB", "--no-eval", "--json")
    assert code == 0
    plan = json.loads(out)
    assert [s["name"] for s in plan["steps"]] == ["load", "stages[0] drop_layers", "stages[1] heal",
                                                  "stages[2] cast", "write"]
    heal = plan["steps"][2]["parts"]
    assert heal["teacher (source copy)"] == heal["weights"] == 2 * 1_279_391_488
    assert heal["stages[1] heal: gradients and AdamW state"] > 12 * 10**9 and plan["fits"] is False
    assert plan["peak_step"] == "stages[1] heal" and any("method: lora" in tip for tip in plan["advice"])
    code, out, _ = run_cli(monkeypatch, capsys, "plan", "minitron", "--model", str(folder), "--device", "cuda",
                           "--memory", "24GB", "--no-eval", "--json", "--set", "stages[1].method=lora")
    assert code == 0 and json.loads(out)["fits"] is True


def test_a_hub_model_is_planned_from_its_config_alone_or_refused_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(monkeypatch, capsys, "plan", "fp16", "--model", "no-such-org/no-such-model")
    assert_one_line_error(code, err)
    assert "config.json" in err


def test_vllm_room_for_the_kv_cache_decides_whether_the_engine_starts():
    spec = recipe([], eval={"runtime": "vllm", "engine": {"max_model_len": 8192}}).eval
    big = ModelShape.from_config(public_config("llama-3.1-70b"))
    single = vllm_plan(spec, big, big.weights_bytes, 80 * 10**9)
    assert single["fits"] is False and single["kv_tokens"] == 0
    spec.engine.tensor_parallel_size = 4
    four = vllm_plan(spec, big, big.weights_bytes, 80 * 10**9)
    assert four["fits"] is True and four["weights_per_gpu"] == big.weights_bytes // 4
    spec.engine.tensor_parallel_size = 1
    small = ModelShape.from_config(public_config("exaone-4.0-1.2b"))
    l4 = vllm_plan(spec, small, small.weights_bytes, 24 * 10**9)  # the lg-aimers L4
    assert l4["kv_bytes_per_token"] == 2 * 30 * 8 * 64 * 2 and l4["kv_tokens"] > 100_000


def test_refusals_name_the_step_and_what_to_change():
    planned = recipe([{"stage": "heal", "steps": 1}])
    plan = Plan(device="cuda", model="m", params=1, dtype="bfloat16", budget=10 * 10**9, output_bytes=10**9,
                steps=[Step("load", {"weights": 5 * 10**9}),
                       Step("stages[0] heal", {"weights": 5 * 10**9, "stages[0] heal: logits": 9 * 10**9})])
    message = refusal(planned, plan, "r.yaml")
    assert message.startswith("r.yaml: stages[0] heal needs ~14.0 GB on cuda")
    assert "method: lora" in message and "device_map: auto" in message
    plan.budget, plan.disk_free = None, 10**8
    assert "of disk" in refusal(planned, plan, "r.yaml")
