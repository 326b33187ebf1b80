"""Run an exported decoder in onnxruntime: greedy decoding with the KV cache, and optimum's ORTModelForCausalLM.

The graph follows optimum-onnx's text-generation-with-past layout: inputs `input_ids`, `attention_mask`,
`position_ids`, `past_key_values.N.key|value`; outputs `logits`, `present.N.key|value`. `OnnxDecoder` needs
nothing but the .onnx file and plain onnxruntime: the cache's KV heads and head dim are static dimensions of
the graph's own inputs, so no config is read (what a deployment with bare onnxruntime has).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from compressor.core.layout import ONNX_FILE
_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def open_session(path: Path, threads: int | None = None, spin: bool = True):
    """A CPU InferenceSession on `path` (default graph optimisations; `threads` intra-op threads if given).

    spin=False: idle worker threads block instead of spinning, so they do not steal the cores from whatever
    runs next in this process (a benchmark interleaving torch and several sessions).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: ORT warns about every unused initializer otherwise
    if threads:
        options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class OnnxDecoder:
    """Greedy decoding, batch 1, on an InferenceSession of an optimum-onnx causal-LM export."""

    def __init__(self, session):
        self.session = session
        inputs = {i.name: i for i in session.get_inputs()}
        self.past = [i for i in session.get_inputs() if i.name.startswith("past_key_values.")]
        missing = [name for name in ("input_ids", "attention_mask") if name not in inputs]
        if missing or not self.past:
            what = ", ".join(missing) if missing else "past_key_values.* (the KV cache)"
            raise ValueError(f"not a text-generation-with-past decoder: no input {what}")
        self.has_position_ids = "position_ids" in inputs
        self.output_names = [o.name for o in session.get_outputs()]
        if "logits" not in self.output_names:
            raise ValueError("not a causal-LM decoder: no output 'logits'")

    @property
    def cache_dtype(self) -> str:
        return np.dtype(_FLOAT_TYPES.get(self.past[0].type, np.float32)).name

    def empty_cache(self) -> dict[str, np.ndarray]:
        cache = {}
        for i in self.past:  # [batch, kv_heads, past_len, head_dim]: the last dim and the heads are static
            _, heads, _, head_dim = i.shape
            if not isinstance(heads, int) or not isinstance(head_dim, int):
                raise ValueError(f"{i.name} has symbolic KV heads / head dim {i.shape}: cannot size the cache")
            cache[i.name] = np.zeros((1, heads, 0, head_dim), dtype=_FLOAT_TYPES.get(i.type, np.float32))
        return cache

    def forward(self, ids: list[int], cache: dict[str, np.ndarray], past_len: int):
        """Logits [len(ids), vocab] (float32) for `ids` after `past_len` cached positions, and the grown cache."""
        total = past_len + len(ids)
        feeds = {"input_ids": np.asarray([ids], dtype=np.int64),
                 "attention_mask": np.ones((1, total), dtype=np.int64), **cache}
        if self.has_position_ids:
            feeds["position_ids"] = np.arange(past_len, total, dtype=np.int64)[None]
        outputs = dict(zip(self.output_names, self.session.run(None, feeds)))
        grown = {name.replace("present.", "past_key_values.", 1): value
                 for name, value in outputs.items() if name.startswith("present.")}
        return outputs["logits"][0].astype(np.float32, copy=False), grown

    def logits(self, ids: list[int]) -> np.ndarray:
        """Logits at every position of `ids` in one prefill pass."""
        return self.forward(ids, self.empty_cache(), 0)[0]

    def greedy(self, prompt_ids: list[int], max_tokens: int) -> dict:
        """Exactly `max_tokens` greedy ids (EOS not special), the first step's logits, prefill / decode seconds.

        decode_s spans the max_tokens - 1 cached steps after the prefill (forward + argmax each), like the
        torch time-per-token measurement.
        """
        start = time.perf_counter()
        logits, cache = self.forward(list(prompt_ids), self.empty_cache(), 0)
        first = logits[-1].copy()
        tokens = [int(first.argmax())]
        after_prefill = time.perf_counter()
        for _ in range(max_tokens - 1):
            logits, cache = self.forward([tokens[-1]], cache, len(prompt_ids) + len(tokens) - 1)
            tokens.append(int(logits[-1].argmax()))
        end = time.perf_counter()
        return {"token_ids": tokens, "first_logits": first, "prefill_s": after_prefill - start,
                "decode_s": end - after_prefill, "decode_steps": max_tokens - 1}


def load_ort_model(folder: Path, file_name: str = ONNX_FILE, provider: str = "CPUExecutionProvider"):
    """optimum's ORTModelForCausalLM on `folder/file_name`, with the KV-cache shape taken from the config.

    ORTModelForCausalLM sizes its empty cache from a list of model types it knows (anything else: all heads,
    hidden / heads wide): wrong for EXAONE-4.0's grouped KV heads, and for any family once heads are pruned
    (explicit head_dim). The adapter reads both from the config.
    """
    from optimum.onnxruntime import ORTModelForCausalLM

    from compressor.models.adapters import adapter_for

    model = ORTModelForCausalLM.from_pretrained(Path(folder), file_name=file_name, provider=provider)
    model.num_key_value_heads, model.embed_size_per_head = adapter_for(model.config).kv_cache_shape(model.config)
    return model
