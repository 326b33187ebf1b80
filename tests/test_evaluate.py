"""compressor.evaluate: corpus, lm-eval perplexity, time per token, score — on a tiny random Llama."""

import json
import math

import pytest
import torch

from compressor.core.errors import UserError
from compressor.data.corpus import SPLITS, corpus_dir, load_corpus
from compressor.evaluate.latency import fixed_prompt, time_per_token
from compressor.evaluate.perplexity import perplexity
from compressor.evaluate.score import score
from compressor.models.tiny import TINY_VOCAB, byte_tokenizer, tiny_llama_config, tiny_model


@pytest.fixture(scope="module")
def tokenizer():
    return byte_tokenizer()


@pytest.fixture(scope="module")
def model():
    return tiny_model(tiny_llama_config(layers=2, hidden=64, heads=4, kv_heads=2, ffn=128))


@pytest.fixture(scope="module")
def eval_docs():
    return load_corpus("eval", limit=5)


# ---------------------------------------------------------------- score


def test_score_arithmetic():
    out = score(perf=0.9, perf_base=1.0, tpt=5.0, tpt_base=10.0)
    assert out["perf_norm"] == pytest.approx(0.9)
    assert out["speed_norm"] == pytest.approx(0.5)
    assert out["score"] == pytest.approx(0.7)
    same = score(2.0, 2.0, 3.0, 3.0)
    assert same == pytest.approx({"perf_norm": 1.0, "speed_norm": 0.0, "score": 0.5})


def test_score_clamps_at_zero():
    out = score(perf=0.1, perf_base=1.0, tpt=30.0, tpt_base=10.0)  # 0.5*0.1 + 0.5*(1-3) < 0
    assert out["speed_norm"] == pytest.approx(-2.0)
    assert out["score"] == 0.0


@pytest.mark.parametrize("perf_base, tpt_base", [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0), (1.0, -2.0)])
def test_score_rejects_non_positive_bases(perf_base, tpt_base):
    with pytest.raises(ValueError):
        score(1.0, perf_base, 1.0, tpt_base)


# ---------------------------------------------------------------- corpus


def test_corpus_splits_disjoint_and_non_empty():
    texts = {split: load_corpus(split) for split in SPLITS}
    for split, docs in texts.items():
        assert docs and all(isinstance(d, str) and d.strip() for d in docs), split
    assert len(texts["calibration"]) >= 150 and len(texts["eval"]) >= 100
    assert len(texts["long"]) == 10 and all(len(d) >= 20_000 for d in texts["long"])
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not set(texts[a]) & set(texts[b]), (a, b)
    # disjoint by source module too
    sources = {}
    for split in SPLITS:
        with open(corpus_dir() / f"{split}.jsonl", encoding="utf-8") as f:
            sources[split] = {m for line in f for m in json.loads(line)["source"].split(", ")}
    assert not sources["eval"] & sources["calibration"]
    assert not sources["long"] & (sources["eval"] | sources["calibration"])


def test_corpus_limit_and_unknown_split():
    assert load_corpus("eval", limit=3) == load_corpus("eval")[:3]
    with pytest.raises(UserError):
        load_corpus("train")


def test_corpus_folder_small():
    assert sum(p.stat().st_size for p in corpus_dir().iterdir()) < 3_000_000
    assert (corpus_dir() / "LICENSE").is_file() and (corpus_dir() / "README.md").is_file()


# ---------------------------------------------------------------- perplexity


def test_perplexity_finite_and_consistent(model, tokenizer, eval_docs):
    params_before = [p.detach().clone() for p in model.parameters()]
    vocab_before = len(tokenizer)
    out = perplexity(model, tokenizer, docs=eval_docs)
    assert out["docs"] == 5
    for key in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert math.isfinite(out[key]) and out[key] > 0, key
    assert out["bits_per_byte"] == pytest.approx(math.log2(out["byte_perplexity"]), rel=1e-9)
    assert out["word_perplexity"] > out["byte_perplexity"]  # words are several bytes long
    # lm-eval left the caller's model and tokenizer alone
    assert next(model.parameters()).dtype == torch.float32 and next(model.parameters()).device.type == "cpu"
    assert all(torch.equal(a, b) for a, b in zip(params_before, model.parameters()))
    assert len(tokenizer) == vocab_before


def test_perplexity_matches_direct_computation(model, tokenizer):
    """One short document (one window): lm-eval's total loglik == sum log p(text | BOS) in torch."""
    doc = load_corpus("eval", limit=1)[0][:300]
    out = perplexity(model, tokenizer, docs=[doc])
    ids = tokenizer(doc, add_special_tokens=False)["input_ids"]
    inputs = torch.tensor([[tokenizer.bos_token_id] + ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(inputs).logits.float(), dim=-1)[0, :-1]
    loglik = logprobs.gather(1, torch.tensor(ids)[:, None]).sum().item()
    n_bytes = len(doc.encode("utf-8"))
    assert out["byte_perplexity"] == pytest.approx(math.exp(-loglik / n_bytes), rel=1e-4)
    assert out["word_perplexity"] == pytest.approx(math.exp(-loglik / len(doc.split())), rel=1e-3)


def test_perplexity_uniform_and_huge_models(tokenizer, eval_docs):
    """A zero lm_head predicts uniformly: byte ppl == vocab size exactly (byte tokens); huge weights: far worse."""
    uniform = tiny_model(tiny_llama_config(layers=2))  # config says tied embeddings...
    uniform.lm_head.weight = torch.nn.Parameter(torch.zeros_like(uniform.lm_head.weight))  # ...but untied here
    flat = perplexity(uniform, tokenizer, docs=eval_docs[:2])
    assert flat["byte_perplexity"] == pytest.approx(TINY_VOCAB, rel=1e-5)
    assert flat["bits_per_byte"] == pytest.approx(math.log2(TINY_VOCAB), rel=1e-5)
    # HFLM's tie_weights() did not re-tie the head to the embeddings
    assert torch.count_nonzero(uniform.lm_head.weight) == 0
    assert torch.count_nonzero(uniform.model.embed_tokens.weight) > 0

    huge = tiny_model(tiny_llama_config(layers=2))
    with torch.no_grad():
        for p in huge.parameters():
            if p.dim() == 2:
                p.mul_(20.0)
    wild = perplexity(huge, tokenizer, docs=eval_docs[:2])
    assert wild["byte_perplexity"] > 10 * flat["byte_perplexity"]


def test_perplexity_float16_on_cpu(model, tokenizer, eval_docs):
    reference = perplexity(model, tokenizer, docs=eval_docs[:2])
    half = tiny_model(tiny_llama_config(layers=2)).half()
    out = perplexity(half, tokenizer, docs=eval_docs[:2], batch_size=2, max_length=256)
    assert next(half.parameters()).dtype == torch.float16
    assert math.isfinite(out["byte_perplexity"])
    # max_length only changes the window split (less context at window starts), fp16 only rounding
    assert out["bits_per_byte"] == pytest.approx(reference["bits_per_byte"], rel=0.05)


def test_perplexity_rejects_empty(model, tokenizer):
    with pytest.raises(UserError):
        perplexity(model, tokenizer, docs=["", "  "])


# ---------------------------------------------------------------- latency


def test_fixed_prompt_exact_and_deterministic(tokenizer):
    a = fixed_prompt(tokenizer, 128)
    assert len(a) == 128 and a == fixed_prompt(tokenizer, 128)


def test_time_per_token_fields(model, tokenizer):
    out = time_per_token(model, tokenizer, prompt_tokens=32, new_tokens=4, runs=2, warmup=1)
    expected = {"tpt_ms_median", "tpt_ms_min", "tpt_ms_max", "tpt_ms_runs", "prefill_ms_median", "prompt_tokens",
                "new_tokens", "runs", "batch_size", "device", "dtype", "threads"}
    assert expected <= set(out)
    assert len(out["tpt_ms_runs"]) == 2
    assert out["tpt_ms_min"] <= out["tpt_ms_median"] <= out["tpt_ms_max"]
    assert out["tpt_ms_min"] > 0 and out["prefill_ms_median"] > 0
    assert (out["prompt_tokens"], out["new_tokens"], out["runs"], out["batch_size"]) == (32, 4, 2, 1)
    assert out["device"] == "cpu" and out["dtype"] == "float32"
    assert out["threads"] == torch.get_num_threads()


def test_time_per_token_batch_and_half(tokenizer):
    half = tiny_model(tiny_llama_config(layers=2)).half()
    out = time_per_token(half, tokenizer, prompt_tokens=16, new_tokens=3, runs=1, warmup=0, batch_size=2)
    assert out["batch_size"] == 2 and out["dtype"] == "float16" and len(out["tpt_ms_runs"]) == 1
