import pytest
import torch

from compressor.core.errors import UserError
from compressor.data.corpus import load_corpus
from compressor.heal.data import Batches, train_and_holdout
from compressor.heal.loop import lr_factor
from compressor.heal.loss import kd_loss
from compressor.models.tiny import byte_tokenizer
from compressor.recipe import parse_recipe
from compressor.catalogue import stage_function
from compressor.stages import StageContext
from structural_helpers import CALIBRATION, apply_tiny, load, logits, one_thread  # noqa: F401

HEAL = {"stage": "heal", "steps": 40, "lr": 3e-3, "seq_len": 64, "batch": 4, "holdout": 4}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("prune", [
    {"stage": "prune_mlp", "intermediate_size": 48, "calibration": CALIBRATION},
    {"stage": "reduce_hidden", "hidden_size": 48, "calibration": CALIBRATION},
])
def test_heal_lowers_the_distillation_loss_on_held_back_text(tmp_path, tiny_dir, prune):
    apply_tiny(tmp_path, tiny_dir, [prune], name="pruned")
    out, report = apply_tiny(tmp_path, tiny_dir, [prune, HEAL], name="healed")
    heal = report["stages"][1]["result"]
    assert heal["steps"] == 40 and heal["heldout_windows"] == 4 and heal["tokens"] == 40 * 4 * 64
    assert heal["heldout_kd_after"] < 0.9 * heal["heldout_kd_before"], heal
    assert heal["train_loss_last"] < heal["train_loss_first"]
    assert len(heal["scores"]["train_loss"]) == 40
    # the teacher is the source as loaded, and the saved student is what was trained: recompute both losses
    _, held = train_and_holdout(byte_tokenizer(), load_corpus("calibration"), 64, 4, seed=0)
    teacher = load(tiny_dir)
    loss = lambda folder: float(kd_loss(logits(load(folder), held), logits(teacher, held)))  # noqa: E731
    assert loss(tmp_path / "pruned" / "model") == pytest.approx(heal["heldout_kd_before"], rel=1e-3)
    assert loss(out) == pytest.approx(heal["heldout_kd_after"], rel=1e-3)


def test_heal_with_hidden_loss_checkpointing_and_bf16_autocast(tmp_path, tiny_exaone4_dir):
    stages = [{"stage": "reduce_hidden", "hidden_size": 48, "calibration": CALIBRATION},
              {**HEAL, "steps": 3, "hidden_weight": 0.5, "gradient_checkpointing": True, "autocast": "bf16"}]
    out, report = apply_tiny(tmp_path, tiny_exaone4_dir, stages)
    heal = report["stages"][1]["result"]
    assert heal["steps"] == 3 and all(v == v for v in heal["scores"]["train_loss"])  # finite, no NaN
    model = load(out)
    assert next(model.parameters()).dtype == torch.float32 and not model.is_gradient_checkpointing


def test_frozen_embeddings_stay_as_they_were(tmp_path, tiny_llama_dir):
    out, report = apply_tiny(tmp_path, tiny_llama_dir, [{**HEAL, "steps": 3, "train_embeddings": False}])
    healed, source = load(out), load(tiny_llama_dir)
    assert torch.equal(healed.model.embed_tokens.weight, source.model.embed_tokens.weight)
    assert not torch.equal(healed.model.layers[0].mlp.up_proj.weight, source.model.layers[0].mlp.up_proj.weight)
    embedding = source.model.embed_tokens.weight.numel()
    assert report["stages"][0]["result"]["trained_params"] == sum(p.numel() for p in source.parameters()) - embedding


def test_heal_keeps_the_input_dtype_and_needs_a_teacher(tiny_llama_dir):
    from compressor.models.adapters import adapter_for
    from compressor.models.sources import load_model

    model, tokenizer = load_model(tiny_llama_dir, torch.device("cpu"), torch.bfloat16)
    params = parse_recipe({"name": "t", "stages": [{**HEAL, "steps": 2}]}).stages[0]
    with pytest.raises(RuntimeError, match="heal needs the frozen source model"):
        stage_function("heal")(model, tokenizer, params, StageContext(adapter_for(model.config), torch.device("cpu")))
    teacher = load(tiny_llama_dir)
    ctx = StageContext(adapter_for(model.config), torch.device("cpu"), teacher=teacher)
    model = stage_function("heal")(model, tokenizer, params, ctx)
    assert next(model.parameters()).dtype == torch.bfloat16 and ctx.records["steps"] == 2


@pytest.mark.parametrize("stage, message", [
    ({"split": "eval"}, r"split 'eval' is read by the evaluation"),
    ({"split": "long"}, r"split 'long' is read by the evaluation"),
    ({"split": "wiki"}, r"unknown corpus split 'wiki'"),
    ({"steps": 0}, r"steps: Input should be greater than 0"),
    ({"autocast": "fp8"}, r"autocast: Input should be 'auto', 'bf16' or 'none'"),
])
def test_invalid_heal_settings(tmp_path, tiny_llama_dir, stage, message):
    with pytest.raises(UserError, match=message):
        apply_tiny(tmp_path, tiny_llama_dir, [{"stage": "heal", **stage}])


def test_held_back_windows_come_from_other_documents():
    tokenizer = byte_tokenizer()
    docs = load_corpus("calibration")[:30]
    train, held = train_and_holdout(tokenizer, docs, 64, 6, seed=1)
    assert held.shape == (6, 64) and train.shape[1] == 64 and len(train) > 100
    train_text = "".join(tokenizer.decode(row) for row in train)
    held_text = tokenizer.decode(held[0])
    assert held_text[:40] not in train_text
    again, held_again = train_and_holdout(tokenizer, docs, 64, 6, seed=1)
    assert torch.equal(train, again) and torch.equal(held, held_again)  # seeded
    with pytest.raises(ValueError, match="too little text"):
        train_and_holdout(tokenizer, docs[:2], 64, 100, seed=1)


def test_batches_cycle_through_every_window_each_pass():
    batches = Batches(torch.arange(10).view(10, 1), 4, seed=0)
    seen = [int(v) for _ in range(5) for v in batches.next()]
    assert sorted(seen[:10]) == list(range(10)) == sorted(seen[10:])  # each pass: every window once
    assert seen[:10] != list(range(10)) and seen[:10] != seen[10:]  # shuffled, differently each pass
    assert batches.passes == 2


def test_lr_warms_up_then_decays_to_the_floor():
    values = [lr_factor(step, 100, 10, 0.1) for step in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[10] == pytest.approx(1.0) and values[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))


def test_kd_loss_is_zero_for_equal_logits_and_positive_otherwise():
    a = torch.randn(2, 5, 11)
    assert float(kd_loss(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(kd_loss(a, a + torch.randn_like(a))) > 0
    p, q = torch.softmax(a, -1), torch.log_softmax(a * 0.5, -1)
    expected = (p * (p.log() - q)).sum(-1).mean()
    assert float(kd_loss(a * 0.5, a)) == pytest.approx(float(expected), rel=1e-5)
