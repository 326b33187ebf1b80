import json

import pytest
import torch

from compressor.core.errors import UserError
from compressor.models.adapters import adapter_for
from structural_helpers import CALIBRATION, IDS, apply_tiny, load, logits, one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def test_keeping_every_neuron_is_the_identity(tmp_path, tiny_dir):
    out, report = apply_tiny(tmp_path, tiny_dir, [{"stage": "prune_mlp", "intermediate_size": 128,
                                                   "calibration": CALIBRATION}])
    torch.testing.assert_close(logits(load(out)), logits(load(tiny_dir)), atol=1e-5, rtol=1e-5)
    assert report["stages"][0]["result"]["kept_importance_share_min"] == 1.0


def test_pruned_neurons_equal_zeroing_them(tmp_path, tiny_dir):
    out, report = apply_tiny(tmp_path, tiny_dir, [{"stage": "prune_mlp", "intermediate_fraction": 0.5,
                                                   "round_to": 8, "calibration": CALIBRATION}])
    result = report["stages"][0]["result"]
    assert (result["intermediate_size_before"], result["intermediate_size_after"]) == (128, 64)
    scores = torch.tensor(result["scores"]["neuron_importance"])
    assert scores.shape == (4, 128) and (scores >= 0).all()

    original = load(tiny_dir)
    with torch.no_grad():
        for layer, layer_scores in zip(original.model.layers, scores):
            dropped = torch.topk(layer_scores, 64, largest=False).indices
            layer.mlp.down_proj.weight[:, dropped] = 0
    expected = logits(original)
    pruned = load(out)
    assert not torch.allclose(logits(load(tiny_dir)), expected, atol=1e-3)
    torch.testing.assert_close(logits(pruned), expected, atol=1e-5, rtol=1e-5)

    assert json.loads((out / "config.json").read_text())["intermediate_size"] == 64
    mlp = pruned.model.layers[2].mlp
    assert mlp.gate_proj.weight.shape == (64, 64) == mlp.up_proj.weight.shape and mlp.down_proj.weight.shape == (64, 64)
    assert adapter_for(pruned.config).config_problems(pruned.config) == []
    with torch.no_grad():
        assert torch.equal(pruned.generate(IDS, max_new_tokens=5, do_sample=False),
                           pruned.generate(IDS, max_new_tokens=5, do_sample=False, use_cache=False))


@pytest.mark.parametrize("stage, message", [
    ({"intermediate_size": 256}, r"intermediate_size 256 is outside 1..128"),
    ({"intermediate_size": -4}, r"intermediate_size: Input should be greater than 0"),
    ({"intermediate_size": [64, 64, 64, 32]}, r"give one number for every layer"),
    ({"intermediate_fraction": 0}, r"intermediate_fraction: Input should be greater than 0"),
    ({"intermediate_size": 64, "intermediate_fraction": 0.5}, r"exactly one of `intermediate_size` or"),
])
def test_invalid_sizes_fail_before_loading(tmp_path, tiny_exaone4_dir, monkeypatch, stage, message):
    import compressor.pipeline

    monkeypatch.setattr(compressor.pipeline, "load_model", lambda *a, **k: pytest.fail("loaded the model"))
    with pytest.raises(UserError, match=message):
        apply_tiny(tmp_path, tiny_exaone4_dir, [{"stage": "prune_mlp", **stage}])
