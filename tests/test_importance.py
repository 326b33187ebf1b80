import json

import pytest
import torch

from compressor.data.calibration import CalibrationSpec, calibration_windows
from compressor.edits import layer_importance
from compressor.edits.importance import L2OfMeanAbs, collect_importance
from compressor.models.adapters import adapter_for
from compressor.models.sources import load_model
from cli_runner import run_cli
from structural_helpers import one_thread  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")
SPEC = CalibrationSpec(samples=3, seq_len=48)


def test_aggregation_is_l2_over_windows_of_mean_abs_over_tokens():
    acc = L2OfMeanAbs()
    acc.add(torch.tensor([[[1.0, -2.0], [-3.0, 2.0]]]))  # window 1: mean |x| = [2, 2]
    acc.add(torch.tensor([[[0.0, 1.0], [0.0, -1.0]]]))  # window 2: mean |x| = [0, 1]
    torch.testing.assert_close(acc.result(), torch.tensor([2.0, 5 ** 0.5]))


@pytest.fixture
def tiny(tiny_dir):
    model, tokenizer = load_model(tiny_dir, torch.device("cpu"))
    return model, adapter_for(model.config), calibration_windows(tokenizer, SPEC)


def test_silent_heads_neurons_and_channels_score_zero(tiny):
    model, adapter, windows = tiny
    with torch.no_grad():
        layer = model.model.layers[1]
        layer.self_attn.v_proj.weight[16:32] = 0  # KV head 1: query heads 2 and 3 output nothing
        layer.mlp.up_proj.weight[[5, 70]] = 0  # neurons 5 and 70 output nothing
        for _, norm in adapter.hidden_norms(model)[:-1]:
            norm.weight[[9, 33]] = 0  # channels 9 and 33 leave every norm at zero
    scores = collect_importance(model, adapter, windows)
    assert scores.heads.shape == (4, 4) and scores.kv_groups.shape == (4, 2) and scores.neurons.shape == (4, 128)
    assert scores.heads[1, 2:].tolist() == [0.0, 0.0] and (scores.heads[1, :2] > 0).all()
    assert scores.kv_groups[1, 1] == 0 and scores.kv_groups[1, 0] > 0
    torch.testing.assert_close(scores.kv_groups[1, 0], torch.linalg.vector_norm(scores.heads[1, :2]))
    assert scores.neurons[1, [5, 70]].tolist() == [0.0, 0.0] and (scores.neurons[0] > 0).all()
    assert scores.channels[[9, 33]].tolist() == [0.0, 0.0] and int((scores.channels > 0).sum()) == 62
    assert scores.channels_by_norm.shape == (8, 64) and len(scores.norm_energy) == 9  # 4 layers x 2 + final
    assert scores.windows == 3 and scores.tokens == 3 * 48


def test_layer_scores_match_the_layer_importance_module(tiny):
    model, adapter, windows = tiny
    scores = collect_importance(model, adapter, windows, kinds=("layers",))
    states = layer_importance.layer_states(model, adapter, windows)
    assert scores.block_influence == pytest.approx(layer_importance.block_influence(states), abs=1e-6)
    assert scores.angular_distance == pytest.approx(layer_importance.angular_block_distances(states, 1), abs=1e-6)
    assert scores.heads is None and scores.neurons is None
    with pytest.raises(ValueError, match="unknown importance kinds"):
        collect_importance(model, adapter, windows, kinds=("experts",))


def test_cli_importance_prints_a_table_and_writes_json_and_heatmap(monkeypatch, capsys, tiny_exaone4_dir, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, "importance", str(tiny_exaone4_dir), "--samples", "2",
                             "--seq-len", "32", "--out", str(tmp_path / "imp"))
    assert code == 0, err
    assert "angular" in err and "weakest" in err and "hidden channels (64)" in err
    saved = json.loads((tmp_path / "imp" / "importance.json").read_text())
    assert [r["layer"] for r in saved["layers"]] == [0, 1, 2, 3]
    assert len(saved["scores"]["heads"]) == 4 and len(saved["scores"]["neurons"][0]) == 128
    assert (tmp_path / "imp" / "importance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    output = tmp_path / "run"  # an output folder of `apply`: the files go beside its model/
    (output / "model").mkdir(parents=True)
    for f in tiny_exaone4_dir.iterdir():
        (output / "model" / f.name).write_bytes(f.read_bytes())
    code, out, err = run_cli(monkeypatch, capsys, "importance", str(output), "--samples", "1", "--seq-len", "16",
                             "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["png"] == str(output / "importance.png") and (output / "importance.json").is_file()
    assert result["channels"]["hidden_size"] == 64 and len(result["scores"]["channels"]) == 64


def test_cli_importance_rejects_bad_input_in_one_line(monkeypatch, capsys, tiny_llama_dir, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "importance", str(tiny_llama_dir), "--split", "train")
    assert code == 2 and err.strip() == "error: options: split: unknown corpus split 'train' (known: calibration, eval, long)"
    code, _, err = run_cli(monkeypatch, capsys, "importance", str(tmp_path))
    assert code == 2 and "neither an output folder" in err and "Traceback" not in err
