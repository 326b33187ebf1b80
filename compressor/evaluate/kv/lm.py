"""lm-eval's HF model with generation through the KV-press loop (compressor/evaluate/kv_runtime.py).

Only generation changes: kvpress compresses the cache after a forward pass, so one teacher-forced pass
(loglikelihood, multiple choice, rolling perplexity) scores exactly as without a press, and lm-eval's
own batched path is kept for those. Generative tasks (the suite's retrieval) are decoded greedily one
sequence at a time (left padding stripped: a padded batch would not survive compression).
"""

from __future__ import annotations

import torch
from lm_eval.models.huggingface import HFLM

from compressor.evaluate.kv.runtime import PressRuntime


class PressHFLM(HFLM):
    def __init__(self, *args, runtime: PressRuntime, **kwargs):
        super().__init__(*args, **kwargs)
        self.press_runtime = runtime

    def _model_generate(self, context, max_length: int, stop: list[str], **generation_kwargs) -> torch.Tensor:
        if generation_kwargs.get("do_sample"):
            raise ValueError("the KV-press runtime decodes greedily; this task asks for sampling")
        mask = generation_kwargs.get("attention_mask")
        new_tokens = max_length - context.shape[1]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        eos = self.tokenizer.eos_token_id
        rows = []

        def stop_at(generated: torch.Tensor) -> bool:
            text = self.tok_decode(generated[0].tolist())
            return (eos is not None and generated[0, -1].item() == eos) or any(s in text for s in stop)

        with self.press_runtime.session() as runtime:
            for b in range(context.shape[0]):
                ids = context[b:b + 1]
                if mask is not None:
                    ids = ids[:, mask[b].bool()]
                out = runtime.greedy(ids, new_tokens, stop=stop_at)
                rows.append(out[0])
        width = max(len(r) for r in rows)
        tail = torch.full((len(rows), width), pad, dtype=context.dtype, device=context.device)
        for b, r in enumerate(rows):
            tail[b, :len(r)] = r.to(context.device)
        return torch.cat([context, tail], dim=1)
