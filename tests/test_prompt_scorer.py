"""The EHPC scorer (arXiv 2501.12959) against the stock transformers modules: the full model's eager attention,
and the evaluator layer's last-N_o rows against its stock eager module."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from compressor.models.adapters import adapter_for
from compressor.prompt.scorer import scorer_from_model


def test_scorer_equals_the_stock_models_attention(tiny_dir):
    """Scores from layers 0..L* only == the full stock model's eager attention at L* (sliding layers included)."""
    ids = torch.randint(3, 259, (1, 90), generator=torch.Generator().manual_seed(0))
    reference = AutoModelForCausalLM.from_pretrained(tiny_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        attentions = reference(ids, output_attentions=True).attentions
    model = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()  # SDPA: the scorer makes its own eager twin
    adapter = adapter_for(model.config)
    heads, n_o = [0, 3], 8
    for layer in range(4):
        expected = attentions[layer][0, heads, -n_o:, :].mean(1).sum(0)
        scorer = scorer_from_model(model, adapter, layer, heads, n_o, kernel=4)
        with torch.no_grad():
            rows = scorer.attention_rows(ids)
        assert rows.shape == (2, n_o, 90) and torch.allclose(rows.sum(-1), torch.ones(2, n_o), atol=1e-5)  # softmax rows
        assert torch.allclose(scorer.raw_scores(ids), expected, atol=1e-5)
        smoothed = scorer(ids)
        assert smoothed.shape == (90,)
        assert torch.allclose(smoothed[10], expected[8:12].mean(), atol=1e-5)  # AvgPool1d(4, stride 1, pad 2)
    with torch.no_grad():  # the in-memory model was not modified
        again = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
        assert torch.equal(model(ids).logits, again(ids).logits)


@pytest.mark.parametrize("n, n_o", [(300, 16), (5, 16)])
def test_cheap_evaluator_rows_equal_the_stock_eager_module(tiny_dir, n, n_o):
    """Queries for the last N_o positions only (keys for all; QK-norm, RoPE or NoPE, sliding window as the
    stock module applies them) give the stock eager weights to 1e-5, for every layer and head."""
    ids = torch.randint(3, 259, (1, n), generator=torch.Generator().manual_seed(1))
    model = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    adapter = adapter_for(model.config)
    heads = list(range(model.config.num_attention_heads))
    for layer in range(model.config.num_hidden_layers):
        scorer = scorer_from_model(model, adapter, layer, heads, n_o, kernel=4)
        with torch.no_grad():
            cheap, stock = scorer.attention_rows(ids), scorer.attention_rows_stock(ids)
        assert cheap.shape == stock.shape == (len(heads), min(n, n_o), n)
        assert (cheap - stock).abs().max() < 1e-5, (layer, (cheap - stock).abs().max())
