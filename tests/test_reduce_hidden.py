import json

import pytest
import torch
from safetensors import safe_open

from compressor.edits.reduce_hidden import norm_scale
from compressor.core.errors import UserError
from compressor.models.adapters import adapter_for
from compressor.models.tiny import byte_tokenizer, tiny_llama_config, tiny_model
from compressor.catalogue import stage_function
from compressor.stages import StageContext
from compressor.recipe import parse_recipe
from structural_helpers import CALIBRATION, IDS, apply_tiny, load, logits, one_thread  # noqa: F401

DEAD = [3, 10, 17, 30, 41, 50, 57, 63]  # residual channels nothing writes to

pytestmark = pytest.mark.usefixtures("one_thread")


def kill_channels(folder, out_folder):
    """A copy of the tiny model whose residual stream carries exact zeros in DEAD channels.

    Its RMSNorm epsilon is ~0: the d'/d rescale is exact up to epsilon (which weighs d/d' more after slicing).
    """
    model = load(folder)
    model.config.rms_norm_eps = 1e-12
    with torch.no_grad():
        model.model.embed_tokens.weight[:, DEAD] = 0  # tied: the head reads zeros there too
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[DEAD, :] = 0
            layer.mlp.down_proj.weight[DEAD, :] = 0
    model.save_pretrained(out_folder)
    byte_tokenizer().save_pretrained(out_folder)
    return out_folder


def test_keeping_every_channel_is_the_identity(tmp_path, tiny_dir):
    out, report = apply_tiny(tmp_path, tiny_dir, [{"stage": "reduce_hidden", "hidden_size": 64,
                                                   "calibration": CALIBRATION}])
    torch.testing.assert_close(logits(load(out)), logits(load(tiny_dir)), atol=1e-5, rtol=1e-5)
    assert report["stages"][0]["result"]["norm_scale_range"] == [1.0, 1.0]


def test_removing_channels_that_carry_nothing_keeps_the_logits(tmp_path, tiny_dir):
    source = kill_channels(tiny_dir, tmp_path / "dead")
    out, report = apply_tiny(tmp_path, source, [{"stage": "reduce_hidden", "hidden_size": 56,
                                                 "calibration": CALIBRATION}])
    result = report["stages"][0]["result"]
    assert result["scores"]["kept_channels"] == [c for c in range(64) if c not in DEAD]
    assert result["kept_importance_share"] == 1.0
    # RMSNorm over 56 instead of 64 channels: weights scaled by sqrt(64/56) keep the outputs
    assert result["norm_scale_range"] == [pytest.approx((64 / 56) ** 0.5, abs=1e-4)] * 2
    pruned = load(out)
    torch.testing.assert_close(logits(pruned), logits(load(source)), atol=1e-5, rtol=1e-5)

    config = json.loads((out / "config.json").read_text())
    assert (config["hidden_size"], config["head_dim"], config["num_attention_heads"]) == (56, 16, 4)
    assert pruned.lm_head.weight is pruned.model.embed_tokens.weight  # still tied
    with safe_open(out / "model.safetensors", "pt") as weights:
        assert "lm_head.weight" not in weights.keys()
        assert weights.get_tensor("model.embed_tokens.weight").shape == (259, 56)
    layer = pruned.model.layers[1]
    assert layer.self_attn.q_proj.weight.shape == (64, 56) and layer.self_attn.o_proj.weight.shape == (56, 64)
    assert layer.mlp.gate_proj.weight.shape == (128, 56) and layer.mlp.down_proj.weight.shape == (56, 128)
    assert adapter_for(pruned.config).config_problems(pruned.config) == []
    with torch.no_grad():
        assert torch.equal(pruned.generate(IDS, max_new_tokens=5, do_sample=False),
                           pruned.generate(IDS, max_new_tokens=5, do_sample=False, use_cache=False))


def test_real_reduction_changes_the_output_and_records_scores(tmp_path, tiny_dir):
    out, report = apply_tiny(tmp_path, tiny_dir, [{"stage": "reduce_hidden", "hidden_fraction": 0.75,
                                                   "round_to": 8, "calibration": CALIBRATION}])
    result = report["stages"][0]["result"]
    assert result["hidden_size_after"] == 48 and len(result["scores"]["kept_channels"]) == 48
    assert 0.75 < result["kept_importance_share"] < 1.0  # the kept channels are the important ones
    assert not torch.allclose(logits(load(out)), logits(load(tiny_dir)), atol=1e-3)


def test_untied_head_is_sliced_on_its_own():
    model = tiny_model(tiny_llama_config().__class__(**{**tiny_llama_config().to_dict(), "tie_word_embeddings": False}))
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    params = parse_recipe({"name": "t", "stages": [{"stage": "reduce_hidden", "hidden_size": 40,
                                                     "calibration": CALIBRATION}]}).stages[0]
    ctx = StageContext(adapter=adapter_for(model.config), device=torch.device("cpu"))
    model = stage_function("reduce_hidden")(model, byte_tokenizer(), params, ctx)
    assert model.lm_head.weight.shape == (259, 40) and model.lm_head.weight is not model.model.embed_tokens.weight
    assert model(IDS).logits.shape == (1, 12, 259)


def test_norm_scale():
    energy = torch.tensor([4.0, 0.0, 4.0, 0.0])
    assert norm_scale(energy, [0, 2]) == pytest.approx(2 ** 0.5)  # removed channels empty: sqrt(d / d')
    assert norm_scale(torch.ones(4), [0, 1]) == pytest.approx(1.0)  # equal energy: the RMS is unchanged


@pytest.mark.parametrize("stage, message", [
    ({"hidden_size": 65}, r"hidden_size 65 is outside 1..64"),
    ({"hidden_size": 0}, r"hidden_size: Input should be greater than 0"),
    ({"hidden_size": 32, "method": "rotate"}, r"method: Input should be 'select'"),
])
def test_invalid_sizes_fail_before_loading(tmp_path, tiny_llama_dir, monkeypatch, stage, message):
    import compressor.pipeline

    monkeypatch.setattr(compressor.pipeline, "load_model", lambda *a, **k: pytest.fail("loaded the model"))
    with pytest.raises(UserError, match=message):
        apply_tiny(tmp_path, tiny_llama_dir, [{"stage": "reduce_hidden", **stage}])
