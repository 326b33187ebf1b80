"""Evaluator-head discovery, as published in EHPC (Fei et al., arXiv 2501.12959, NeurIPS 2025).

For every layer l and head h: the attention mass on the needle tokens from the last N_o query
positions (softmax rows averaged over that window), averaged over the probe depths. The evaluator
layer L* is the layer with the largest total over its heads; its top heads are the evaluator heads.
`max_layer` (our knob, not the paper's) limits the search to layers 0..max_layer: the scorer runs L*+1
layers, so a shallower L* compresses faster, usually with heads that find the needle less sharply.
Attention weights come from the stock transformers layers run with eager attention (real softmax
rows; SDPA returns none), read by a forward hook on each attention module.
"""

from contextlib import contextmanager

import torch

from compressor.models.offload import input_device
from compressor.prompt.probes import Probe, build_probes, filler_file
from compressor.prompt.spec import PromptCompressorSpec


@contextmanager
def eager_attention(model):
    """Run `model` with eager attention (returns weights), then restore its implementation."""
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        model.set_attn_implementation(before)


def needle_positions(tokenizer, probe: Probe) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of the probe and the indices of the tokens overlapping the needle's characters."""
    enc = tokenizer(probe.text, add_special_tokens=False, return_offsets_mapping=True)
    start, end = probe.needle_span
    idx = [i for i, (s, e) in enumerate(enc["offset_mapping"]) if s < end and e > start]
    if not idx:
        raise ValueError("the needle maps to no token (tokenizer without offsets?)")
    return torch.tensor([enc["input_ids"]]), torch.tensor(idx)


@torch.no_grad()
def head_scores(model, tokenizer, adapter, probes: list[Probe], n_o: int, progress=lambda m: None) -> torch.Tensor:
    """[layers, heads] attention mass on the needle from the last `n_o` queries, mean over probes."""
    layers = adapter.decoder_layers(model)
    total = None
    captured: dict[int, torch.Tensor] = {}
    needle: dict[str, torch.Tensor] = {}

    def capture(index):
        def hook(module, args, output):
            weights = output[1]  # [batch, heads, queries, keys]
            if weights is None:
                raise RuntimeError("attention module returned no weights (not eager attention?)")
            rows = weights[0, :, -n_o:, :].float()  # [heads, n_o, keys]
            captured[index] = rows[:, :, needle["idx"]].sum(-1).mean(-1).cpu()
        return hook

    device = input_device(model)  # offloaded (model.device_map): accelerate's main device
    with eager_attention(model):
        handles = [adapter.attention(layer).register_forward_hook(capture(i)) for i, layer in enumerate(layers)]
        try:
            for number, probe in enumerate(probes, 1):
                progress(f"probe {number}/{len(probes)} (needle at depth {probe.depth:.1f})")
                ids, needle["idx"] = needle_positions(tokenizer, probe)
                if ids.shape[1] <= n_o:
                    raise ValueError(f"probe has {ids.shape[1]} tokens, not more than N_o = {n_o}")
                captured.clear()
                model(input_ids=ids.to(device), use_cache=False)
                scores = torch.stack([captured[i] for i in range(len(layers))])
                total = scores if total is None else total + scores
        finally:
            for handle in handles:
                handle.remove()
    return total / len(probes)


DEFAULT_HEADS = 8


def heads_for(heads: int | None, config) -> int:
    """How many evaluator heads to keep: as asked, else 8 (every head of a model with fewer)."""
    return heads if heads is not None else min(DEFAULT_HEADS, config.num_attention_heads)


def choose_heads(scores: torch.Tensor, n_heads: int, max_layer: int | None = None) -> tuple[int, list[int], list[float]]:
    """The layer with the largest total score (among layers 0..max_layer when given) and its top `n_heads` heads."""
    layer_scores = scores.sum(dim=1)
    searched = layer_scores if max_layer is None else layer_scores[: max_layer + 1]
    layer = int(searched.argmax())
    k = min(n_heads, scores.shape[1])
    heads = sorted(int(h) for h in scores[layer].topk(k).indices)
    return layer, heads, [float(x) for x in layer_scores]


def discover(model, tokenizer, adapter, params, progress=lambda m: None) -> PromptCompressorSpec:
    """Score every head on the needle probes of `params` (an EvaluatorHeadsParams), then pick L* and its heads."""
    probes = build_probes(tokenizer, params.probe_tokens, params.needle, params.question, params.depths, params.seed,
                          corpus=params.filler)
    scores = head_scores(model, tokenizer, adapter, probes, params.n_o, progress)
    layer, chosen, layer_scores = choose_heads(scores, heads_for(params.heads, model.config), params.max_layer)
    config = model.config
    return PromptCompressorSpec(
        layer=layer, heads=chosen, n_o=params.n_o, kernel=params.kernel, defaults={"rate": params.rate},
        max_layer=params.max_layer,
        model={"model_type": config.model_type, "num_hidden_layers": config.num_hidden_layers,
               "num_attention_heads": config.num_attention_heads,
               "num_key_value_heads": getattr(config, "num_key_value_heads", None) or config.num_attention_heads},
        layer_scores=[round(x, 6) for x in layer_scores],
        head_scores=[[round(float(x), 6) for x in row] for row in scores],
        probe={"needle": params.needle, "question": params.question, "depths": list(params.depths),
               "tokens": params.probe_tokens, "filler": filler_file(params.filler), "seed": params.seed},
    )
