"""Korean through the prompt compressors: valid whole words out of a byte-level BPE that splits Hangul syllables
(token path and coarse passages), and the Korean needle tasks of scripts/make_ehpc_tasks.py."""

import importlib.util
import json
import unicodedata

import pytest

from compressor.prompt import passages, selection
from repo import REPO_ROOT

HANGUL = range(0xAC00, 0xD7A4)


@pytest.fixture(scope="module")
def smol_dir():
    from compressor.models.builtin import materialize_builtin

    return materialize_builtin("smollm2-135m")


@pytest.fixture(scope="module")
def tokenizer(smol_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smol_dir)


@pytest.fixture(scope="module")
def korean_text():
    """About 1,500 SmolLM2 tokens of the Korean corpus (eval/data/ko/long.jsonl), lines as paragraphs."""
    from compressor.data.corpus import load_corpus

    lines = [line.strip() for doc in load_corpus("long", corpus="ko") for line in doc.split("\n") if line.strip()]
    return "\n\n".join(lines[20:34])


@pytest.fixture(scope="module")
def compressors(smol_dir, tokenizer):
    """EHPC with real attention scores (SmolLM2's layers 0..2, heads 0-2: no discovery needed), random, ends."""
    from compressor.prompt.baselines import KeepEnds, RandomKeep
    from compressor.prompt.compressor import PromptCompressor
    from compressor.prompt.scorer import load_scorer
    from compressor.prompt.spec import PromptCompressorSpec

    config = json.loads((smol_dir / "config.json").read_text())
    n_layers, n_heads = config["num_hidden_layers"], config["num_attention_heads"]
    spec = PromptCompressorSpec(
        layer=2, heads=[0, 1, 2], n_o=16, kernel=32,
        model={"model_type": config["model_type"], "num_hidden_layers": n_layers, "num_attention_heads": n_heads,
               "num_key_value_heads": config["num_key_value_heads"]},
        layer_scores=[0.0] * n_layers, head_scores=[[0.0] * n_heads] * n_layers,
        probe={"needle": "n", "question": "q", "depths": [0.5], "tokens": 100, "filler": "f", "seed": 0})
    ehpc = PromptCompressor(tokenizer, load_scorer(smol_dir, spec), spec)
    return {"ehpc": ehpc, "random": RandomKeep(tokenizer), "ends": KeepEnds(tokenizer)}


def test_the_tokenizer_splits_hangul_syllables(tokenizer, korean_text):
    ids = tokenizer(korean_text, add_special_tokens=False)["input_ids"]
    split = [i for i in ids if "\ufffd" in tokenizer.decode([i])]  # a token holding part of a syllable's bytes
    assert len(split) > len(ids) // 4


@pytest.mark.parametrize("method", ["ehpc", "random", "ends"])
@pytest.mark.parametrize("coarse, reorder", [("tokens", False), ("passages", False), ("passages", True)])
def test_korean_stays_valid_whole_words(compressors, korean_text, method, coarse, reorder):
    pc = compressors[method]
    question = "국회의원의 임기는 몇 년입니까?"
    for rate in (0.1, 0.25, 0.5):
        result = pc.compress(korean_text, rate=rate, question=question, coarse=coarse, reorder=reorder)
        assert "\ufffd" not in result.text and unicodedata.is_normalized("NFC", result.text)
        assert result.text.endswith(question) and result.tokens_out < result.tokens_in
        source = result.source
        assert set(result.kept_spans) <= set(result.all_spans)
        for s, e in result.kept_spans:  # a whole word: no letter (Hangul syllable) of the source either side
            word = source[s:e].strip()
            start = s + source[s:e].index(word)
            end = start + len(word)
            assert word.isalnum() or len(word) == 1, word
            if word.isalnum():
                assert start == 0 or not source[start - 1].isalnum()
                assert end == len(source) or not source[end].isalnum()
        if reorder:  # each passage written is the concatenation of its kept words, in source order
            units = selection.split_units(source, pc._encode(source)[1])
            owner = passages.unit_passages(units, source, passages.split_passages(korean_text))
            kept = {span: owner[result.all_spans.index(span)] for span in result.kept_spans}
            pieces = {}
            for (s, e), p in sorted(kept.items()):
                if p >= 0:
                    pieces[p] = pieces.get(p, "") + source[s:e]
            written = result.context.split("\n\n")
            assert sorted(written) == sorted(piece.strip() for piece in pieces.values() if piece.strip())
        else:
            assert result.text == "".join(source[s:e] for s, e in result.kept_spans).strip()


@pytest.fixture(scope="module")
def tasks():
    spec = importlib.util.spec_from_file_location("make_ehpc_tasks", REPO_ROOT / "scripts" / "make_ehpc_tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hangul_or_plain(text: str) -> bool:
    return all(ord(c) in HANGUL or c in " ?.,0123456789" for c in text)


def test_korean_tasks_are_deterministic_and_hold_their_answers(tasks, tokenizer):
    items = tasks.make_tasks(tokenizer, per_kind=3, min_tokens=600, max_tokens=1500, seed=4, language="ko")
    assert items == tasks.make_tasks(tokenizer, per_kind=3, min_tokens=600, max_tokens=1500, seed=4, language="ko")
    assert items != tasks.make_tasks(tokenizer, per_kind=3, min_tokens=600, max_tokens=1500, seed=5, language="ko")
    english = tasks.make_tasks(tokenizer, per_kind=1, min_tokens=600, max_tokens=1500, seed=4)
    assert all(item.keys() == english[0].keys() for item in items) and english[0]["language"] == "en"
    assert [item["id"] for item in items] == [f"ko-{kind}-{i}" for kind in tasks.KINDS for i in range(3)]
    for item in items:
        context, answer, kind = item["context"], item["answer"], item["kind"]
        assert item["language"] == "ko" and 0 < item["depth"] < 1 and item["n_tokens"] <= 1500
        assert "\ufffd" not in context and unicodedata.is_normalized("NFC", context)
        assert _hangul_or_plain(item["question"]) and _hangul_or_plain(item["answer_prefix"])
        assert item["answer_prefix"] not in item["question"]  # primed from the needle's wording, not the question's
        assert context.count(item["answer_prefix"] + " " + answer) == 1
        if kind == "passkey":
            needle = f"비밀번호는 {answer}입니다. 꼭 기억하세요. {answer}, 이것이 비밀번호입니다."
            assert answer.isdigit() and context.count(needle) == 1 and context.count(answer) == 2
        elif kind == "single":
            key = item["question"].split()[2].removesuffix("의")
            assert key in tasks.KEYS_KO and answer.isdigit() and len(answer) == 7
            assert context.count(f"{key}의 특별한 마법의 숫자는 {answer}입니다.") == 1 and context.count(answer) == 1
        else:  # word answers: a city, one of four keyed needles
            key = item["question"].split()[2].removesuffix("의")
            assert answer in tasks.CITIES_KO and context.count("의 특별한 마법의 도시는 ") == 4
            assert context.count(f"{key}의 특별한 마법의 도시는 {answer}입니다.") == 1 and context.count(answer) == 1
            assert context.count(key) == 1
