"""LLMLingua (Jiang et al., EMNLP 2023, arXiv 2310.05736) and LongLLMLingua (Jiang et al., ACL 2024,
arXiv 2310.06839), both from PyPI `llmlingua` 0.2.2, behind the EHPC interface.

For comparison with EHPC (arXiv 2501.12959) only; LongLLMLingua is the baseline the EHPC paper times.
The same model folder's causal LM is LLMLingua's small scoring model. Two offline shims, both at the
library's boundary:
- its constructor calls `tiktoken.encoding_for_model("gpt-3.5-turbo")` (a download) only to count
  tokens: we hand it an encoder backed by the model's own tokenizer instead;
- it passes and slices legacy tuple KV caches, which transformers 4.57 models no longer take: the
  model is wrapped so tuples become a `DynamicCache` going in and tuples again coming out.
"""

import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from compressor.core.errors import UserError
from compressor.prompt.compressor import Compression, check_prompt_chars
from compressor.prompt.selection import budget
from compressor.prompt.spec import spec_folder


class HFEncoding:
    """The part of a tiktoken `Encoding` LLMLingua uses (encode/decode), backed by a HF tokenizer."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.name = f"hf:{getattr(tokenizer, 'name_or_path', 'tokenizer')}"

    def encode(self, text: str, **_) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids)


class LegacyCacheModel(nn.Module):
    """Wraps a causal LM: legacy ((k, v), ...) caches in and out, a DynamicCache inside."""

    def __init__(self, model):
        super().__init__()
        self.inner = model
        self.config = model.config

    @property
    def device(self):
        return self.inner.device

    def forward(self, *args, past_key_values=None, **kwargs):
        from transformers import DynamicCache

        if isinstance(past_key_values, (list, tuple)):
            past_key_values = DynamicCache.from_legacy_cache(tuple((k, v) for k, v in past_key_values))
        output = self.inner(*args, past_key_values=past_key_values, **kwargs)
        if getattr(output, "past_key_values", None) is not None and hasattr(output.past_key_values, "to_legacy_cache"):
            output.past_key_values = output.past_key_values.to_legacy_cache()
        return output


@contextmanager
def _offline_tiktoken(encoding: HFEncoding):
    import tiktoken

    original = tiktoken.encoding_for_model
    tiktoken.encoding_for_model = lambda model_name: encoding
    try:
        yield
    finally:
        tiktoken.encoding_for_model = original


class LLMLinguaCompressor:
    """`compress(prompt, rate=, target_tokens=, question=, force=)` like `PromptCompressor`, done by LLMLingua."""

    method = "llmlingua"
    separator = "\n\n"
    question_aware = False

    def __init__(self, lingua, tokenizer):
        self.lingua = lingua
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, folder, device: str = "cpu", dtype: torch.dtype = torch.float32) -> "LLMLinguaCompressor":
        try:
            from llmlingua import PromptCompressor as Lingua
        except ImportError:
            raise UserError("the LLMLingua baseline needs `pip install llmlingua==0.2.2` "
                            "(or `pip install -e '.[llmlingua]'`)") from None
        from transformers import AutoTokenizer

        model_dir = spec_folder(Path(folder))
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        with _offline_tiktoken(HFEncoding(tokenizer)):
            lingua = Lingua(model_name=str(model_dir), device_map=device,
                            model_config={"trust_remote_code": False, "torch_dtype": dtype})
        lingua.model = LegacyCacheModel(lingua.model).eval()
        return cls(lingua, tokenizer)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def compress(self, prompt: str, rate: float | None = None, target_tokens: int | None = None,
                 question: str | None = None, force=()) -> Compression:
        started = time.perf_counter()
        if not prompt or not prompt.strip():
            raise UserError("empty prompt: nothing to compress")
        if self.question_aware and not (question and question.strip()):
            raise UserError(f"{self.method} ranks the context by the question: give a question")
        source = prompt + (self.separator + question if question else "")
        check_prompt_chars(source)
        n = self.count_tokens(source)
        k = budget(n, rate if rate is not None or target_tokens is not None else 0.5, target_tokens)
        # the budget counts the appended question (as EHPC's does); LLMLingua's target is the context alone
        context_budget = max(1, k - (n - self.count_tokens(prompt)))
        with torch.no_grad():
            out = self.lingua.compress_prompt(self.documents(prompt), question=question or "",
                                              target_token=context_budget, force_tokens=list(force),
                                              concate_question=False, **self.options())
        context = out["compressed_prompt"].strip()
        text = context + (self.separator + question if question else "")
        return Compression(self.method, text, context, question, n, self.count_tokens(text), k,
                           time.perf_counter() - started, source)

    def documents(self, prompt: str) -> list[str]:
        return [prompt]

    def options(self) -> dict:
        return {"use_context_level_filter": False}


class LongLLMLinguaCompressor(LLMLinguaCompressor):
    """LongLLMLingua: question-aware coarse (document) ranking, then contrastive token-level perplexity.

    The prompt's blank-line-separated paragraphs are its documents; the settings are the ones the
    LongLLMLingua README gives for question answering over long contexts.
    """

    method = "longllmlingua"
    question_aware = True

    def documents(self, prompt: str) -> list[str]:
        return [d for d in prompt.split("\n\n") if d.strip()] or [prompt]

    def options(self) -> dict:
        return {"rank_method": "longllmlingua", "condition_in_question": "after_condition",
                "condition_compare": True, "reorder_context": "sort", "dynamic_context_compression_ratio": 0.3,
                "context_budget": "+100"}
