"""The EHPC token scorer: layers 0..L* of a causal LM -> one importance score per prompt token.

EHPC (Fei et al., arXiv 2501.12959): run the model only up to the evaluator layer L*; a token's
score is the sum over the evaluator heads of the mean attention it receives from the last N_o
query positions, smoothed with AvgPool1d (kernel r, stride 1). Layers 0..L*-1 are the stock
transformers modules in the model's own attention implementation (SDPA: no n x n matrix kept);
at layer L* only the evaluator heads' softmax rows for the last N_o queries are computed
(`observation.observation_rows`: its query/key projections, QK-norm and RoPE, no values, no MLP),
which equals the stock eager module's weights (`attention_rows_stock`, kept as the reference).
`load_scorer` reads just the tensors of layers 0..L* from the safetensors files, so memory and time
grow with L*+1, not with the model's depth, and linearly with the prompt's length.
"""

import copy
import json
from pathlib import Path

import torch
from torch import nn

from compressor.core.errors import UserError
from compressor.models.adapters import adapter_for
from compressor.prompt.observation import observation_rows
from compressor.prompt.spec import check_matches


class EvaluatorHeadScorer(nn.Module):
    """input_ids [1, n] -> token scores [n] (float32). Exportable unit: no tokenizer, no text."""

    def __init__(self, config, adapter, embed_tokens, layers, last_norm, last_attention, rotary_emb,
                 heads: list[int], n_o: int, kernel: int):
        super().__init__()
        self.config = config
        self.adapter = adapter
        self.embed_tokens = embed_tokens
        self.layers = nn.ModuleList(layers)
        self.last_norm = last_norm
        self.last_attention = last_attention  # only its q/k projections (and QK-norm) are used
        self.rotary_emb = rotary_emb
        self.register_buffer("heads", torch.tensor(heads, dtype=torch.long), persistent=False)
        self.n_o = n_o
        self.kernel = kernel
        self.pool = nn.AvgPool1d(kernel, stride=1, padding=kernel // 2, count_include_pad=False)

    def _masks(self, config, hidden: torch.Tensor, positions: torch.Tensor) -> dict:
        """Causal (and sliding-window) masks in the form `config`'s attention implementation wants."""
        from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

        n = hidden.shape[1]
        kwargs = dict(config=config, input_embeds=hidden,
                      attention_mask=torch.ones(1, n, dtype=torch.long, device=hidden.device),
                      cache_position=positions[0], past_key_values=None, position_ids=positions)
        masks = {"full_attention": create_causal_mask(**kwargs)}
        if "sliding_attention" in (getattr(self.config, "layer_types", None) or ()):
            masks["sliding_attention"] = create_sliding_window_causal_mask(**kwargs)
        return masks

    def _evaluator_input(self, input_ids: torch.Tensor):
        """Layers 0..L*-1 (stock, SDPA): layer L*'s attention input, RoPE tables and positions."""
        n = input_ids.shape[1]
        positions = torch.arange(n, device=input_ids.device)[None]
        hidden = self.embed_tokens(input_ids)
        position_embeddings = self.rotary_emb(hidden, positions)
        masks = self._masks(self.config, hidden, positions)
        for index, layer in enumerate(self.layers):
            hidden = layer(hidden, attention_mask=masks[self.adapter.layer_type(self.config, index)],
                           position_ids=positions, position_embeddings=position_embeddings,
                           cache_position=positions[0])
        return self.last_norm(hidden), position_embeddings, positions

    def attention_rows(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Softmax rows of the evaluator heads for the last N_o queries: [len(heads), N_o, n]."""
        hidden, position_embeddings, _ = self._evaluator_input(input_ids)
        return observation_rows(self.adapter, self.config, len(self.layers), self.last_attention, hidden,
                                position_embeddings, self.heads, self.n_o).float()

    def attention_rows_stock(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The same rows from the stock attention module in eager mode (all n queries, n x n weights per head):
        the reference `attention_rows` must equal, and the cost it removes (benchmarks/ehpc_scorer.py)."""
        hidden, position_embeddings, positions = self._evaluator_input(input_ids)
        eager_config = copy.copy(self.config)
        eager_config._attn_implementation = "eager"
        stock = _attention_twin(self.last_attention, eager_config)
        masks = self._masks(eager_config, hidden, positions)
        _, weights = stock(hidden_states=hidden, position_embeddings=position_embeddings,
                           attention_mask=masks[self.adapter.layer_type(self.config, len(self.layers))],
                           cache_position=positions[0])
        return weights[0].index_select(0, self.heads)[:, -self.n_o:, :].float()

    def raw_scores(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Sum over evaluator heads of the mean attention from the last N_o queries: [n]."""
        return self.attention_rows(input_ids).mean(dim=1).sum(dim=0)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        raw = self.raw_scores(input_ids)
        return self.pool(raw[None, None])[0, 0, : raw.shape[0]]


def truncated_config(config, adapter, keep: int):
    """A copy of `config` with only the first `keep` decoder layers (per-layer lists cut too)."""
    trunc = copy.deepcopy(config)
    trunc.num_hidden_layers = keep
    for key in adapter.per_layer_config_keys:
        values = getattr(trunc, key, None)
        if isinstance(values, (list, tuple)):
            setattr(trunc, key, list(values[:keep]))
    return trunc


def _attention_twin(attention: nn.Module, config) -> nn.Module:
    """A new attention module of the same class sharing `attention`'s weights (the model stays untouched)."""
    with torch.device("meta"):
        twin = type(attention)(config, attention.layer_idx)
    twin.load_state_dict(attention.state_dict(), assign=True)
    return twin


def scorer_from_model(model, adapter, layer: int, heads: list[int], n_o: int, kernel: int) -> EvaluatorHeadScorer:
    """A scorer sharing the weights (and modules) of an in-memory causal LM, which it does not modify."""
    layers = adapter.decoder_layers(model)
    return EvaluatorHeadScorer(model.config, adapter, adapter.embed_tokens(model), list(layers[:layer]),
                               adapter.attention_input_norm(layers[layer]), adapter.attention(layers[layer]),
                               adapter.rotary_embedding(model), heads, n_o, kernel)


def _owned_scorer(skeleton, adapter, spec) -> EvaluatorHeadScorer:
    layers = adapter.decoder_layers(skeleton)
    return EvaluatorHeadScorer(skeleton.config, adapter, adapter.embed_tokens(skeleton), list(layers[:spec.layer]),
                               adapter.attention_input_norm(layers[spec.layer]), adapter.attention(layers[spec.layer]),
                               adapter.rotary_embedding(skeleton), spec.heads, spec.n_o, spec.kernel)


def _weight_files(folder: Path) -> dict[str, Path]:
    """Checkpoint tensor name -> safetensors file (single file or sharded with an index)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return {k: folder / v for k, v in json.loads(index.read_text())["weight_map"].items()}
    from safetensors import safe_open

    mapping = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(path, "pt") as f:
            mapping.update({k: path for k in f.keys()})
    if not mapping:
        raise UserError(f"{folder}: no *.safetensors weights (the scorer reads safetensors only)")
    return mapping


def load_scorer(folder: Path, spec, device="cpu", dtype=torch.float32) -> EvaluatorHeadScorer:
    """Build layers 0..L* from config.json on the meta device and load only their tensors."""
    from accelerate import init_empty_weights
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(folder)
    config = AutoConfig.from_pretrained(folder)
    adapter = adapter_for(config)
    check_matches(spec, config, folder)
    if getattr(config, "quantization_config", None):
        raise UserError(f"{folder}: quantized weights ({config.quantization_config.get('quant_method', '?')}); "
                        f"the prompt scorer reads unquantized layers: discover and compress on the float model")
    trunc = truncated_config(config, adapter, spec.layer + 1)
    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(trunc, attn_implementation="sdpa")
    scorer = _owned_scorer(skeleton, adapter, spec)
    checkpoint_name: dict[int, str] = {}
    for name, param in skeleton.named_parameters(remove_duplicate=False):
        checkpoint_name.setdefault(id(param), name)  # tied lm_head: keep the embedding's own name
    files = _weight_files(folder)
    state, handles, keys = {}, {}, []
    try:
        for name, param in scorer.named_parameters():
            key = checkpoint_name[id(param)]
            keys.append(key)
            if key not in files:
                raise UserError(f"{folder}: weights lack {key} (needed by the prompt scorer)")
            path = files[key]
            if path not in handles:
                handles[path] = safe_open(path, "pt", device="cpu")
            tensor = handles[path].get_tensor(key)
            if tuple(tensor.shape) != tuple(param.shape):
                raise UserError(f"{folder}: {key} has shape {tuple(tensor.shape)}, config.json implies {tuple(param.shape)}")
            state[name] = tensor.to(dtype)
    finally:
        handles.clear()
    scorer.load_state_dict(state, strict=True, assign=True)
    scorer.loaded_tensors = sorted(keys)
    scorer.loaded_parameters = sum(t.numel() for t in state.values())
    return scorer.to(device).eval()
