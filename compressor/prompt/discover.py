"""Run EHPC discovery on an in-memory model and build the prompt_compressor.json content (arXiv 2501.12959)."""

from compressor.prompt.discovery import choose_heads, head_scores
from compressor.prompt.probes import FILLER_SPLIT, build_probes
from compressor.prompt.spec import PromptCompressorSpec


def discover(model, tokenizer, adapter, *, heads: int = 8, n_o: int = 16, kernel: int = 32, rate: float = 0.5,
             probe_tokens: int = 2048, needle: str, question: str, depths, seed: int = 0,
             progress=lambda m: None) -> PromptCompressorSpec:
    probes = build_probes(tokenizer, probe_tokens, needle, question, depths, seed)
    scores = head_scores(model, tokenizer, adapter, probes, n_o, progress)
    layer, chosen, layer_scores = choose_heads(scores, heads)
    config = model.config
    return PromptCompressorSpec(
        layer=layer, heads=chosen, n_o=n_o, kernel=kernel, defaults={"rate": rate},
        model={"model_type": config.model_type, "num_hidden_layers": config.num_hidden_layers,
               "num_attention_heads": config.num_attention_heads,
               "num_key_value_heads": getattr(config, "num_key_value_heads", None) or config.num_attention_heads},
        layer_scores=[round(x, 6) for x in layer_scores],
        head_scores=[[round(float(x), 6) for x in row] for row in scores],
        probe={"needle": needle, "question": question, "depths": list(depths), "tokens": probe_tokens,
               "filler": f"eval/data/corpus/{FILLER_SPLIT}.jsonl", "seed": seed},
    )
