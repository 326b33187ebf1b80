"""`coarse: passages` (LongLLMLingua's coarse-to-fine, arXiv 2310.06839, over EHPC's scores): ranking, budget,
protected spans, whole words, reorder, documents, the CLI options; the default token path unchanged."""

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_runner import assert_one_line_error, run_cli
from compressor.core.errors import UserError
from compressor.prompt import passages, selection
from compressor.prompt.compressor import PromptCompressor, TokenScoringCompressor
from compressor.prompt.spec import Defaults, PromptCompressorSpec


@pytest.fixture(scope="module")
def smol_tokenizer():
    from transformers import AutoTokenizer

    from compressor.models.builtin import materialize_builtin

    return AutoTokenizer.from_pretrained(materialize_builtin("smollm2-135m"))


class Planted(TokenScoringCompressor):
    """Token scores chosen by the test: `score(source, start, end) -> float` for each token's characters."""

    method = "planted"
    tail_tokens = 4

    def __init__(self, tokenizer, score):
        super().__init__(tokenizer)
        self.score = score
        self.source = None

    def _encode(self, text):
        self.source = text
        return super()._encode(text)

    def token_scores(self, input_ids):
        offsets = self.tokenizer(self.source, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        assert len(offsets) == input_ids.shape[1]
        return torch.tensor([self.score(self.source, s, e) for s, e in offsets])


def _by_keyword(weights: dict[str, float]):
    """Score a token by the paragraph it is in: the weight of the first keyword the paragraph holds (else 0.1)."""
    def score(source, start, end):
        head = source.rfind("\n\n", 0, start)
        tail = source.find("\n\n", end)
        para = source[head + 2 if head >= 0 else 0: tail if tail >= 0 else len(source)]
        return next((w for k, w in weights.items() if k in para), 0.1)
    return score


PARAS = [f"Paragraph {name} talks about the weather in town number {i} and nothing else at all today."
         for i, name in enumerate(["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"])]
QUESTION = "Which paragraph is it?"


def _used_tokens(pc, result):
    _, offsets = pc._encode(result.source)
    units = selection.split_units(result.source, offsets)
    index = {span: u for u, span in enumerate(units.spans)}
    kept = [index[span] for span in result.kept_spans]  # every kept span is a whole word of the source
    cost = units.cost()
    return sum(cost[u] for u in kept), units, kept


def test_reorder_puts_the_best_scored_passage_first_and_keeps_the_budget(smol_tokenizer):
    pc = Planted(smol_tokenizer, _by_keyword({"charlie": 5.0, "echo": 3.0}))
    prompt = "\n\n".join(PARAS)
    result = pc.compress(prompt, rate=0.5, question=QUESTION, coarse="passages", reorder=True)
    assert result.method == "planted+passages"
    assert result.context.startswith(PARAS[2]) and result.context.split("\n\n")[1] == PARAS[4]
    assert result.text == result.context + "\n\n" + QUESTION
    used, _, _ = _used_tokens(pc, result)
    assert used == result.budget
    in_order = pc.compress(prompt, rate=0.5, question=QUESTION, coarse="passages")
    assert in_order.kept_spans == result.kept_spans  # the same words, written in the original order
    assert in_order.context.index(PARAS[2]) < in_order.context.index(PARAS[4])


def test_coarse_cut_drops_low_ranked_passages_whole(smol_tokenizer):
    # the token scores favour two words of every paragraph; the passage scores favour two paragraphs
    def score(source, start, end):
        if source[start:end].strip() in ("weather", "town"):
            return 9.0
        return _by_keyword({"kilo": 2.0, "romeo": 2.0})(source, start, end)

    pc = Planted(smol_tokenizer, score)
    names = ["alpha", "bravo", "golf", "hotel", "india", "juliet", "kilo", "lima", "mike", "november", "oscar",
             "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey", "xray"]
    prompt = "\n\n".join(f"Paragraph {name} talks about the weather in town number {i} today." for i, name in
                          enumerate(names))
    tokens_only = pc.compress(prompt, target_tokens=80, question=QUESTION)
    assert tokens_only.context.count("weather") == len(names)  # the published path: a little of every paragraph
    coarse = pc.compress(prompt, target_tokens=80, question=QUESTION, coarse="passages")
    assert "Paragraph kilo talks" in coarse.context and "Paragraph romeo talks" in coarse.context
    # the budget (80) plus LongLLMLingua's slack of 100 tokens covers 10 of the 20 paragraphs (17-18 tokens each)
    used, units, kept = _used_tokens(pc, coarse)
    owner = passages.unit_passages(units, coarse.source, passages.split_passages(prompt))
    assert len({owner[u] for u in kept} - {-1}) == coarse.context.count("weather") == 10
    assert used == coarse.budget == 80


def test_documents_are_the_passages(smol_tokenizer):
    preface = "A preface of filler words that says nothing of note, " * 4  # past the first tokens (the sink)
    inner = "The second document.\n\nIt has a blank line inside."
    docs = [preface, inner, "  ", "A third document, plain and low scored."]
    pc = Planted(smol_tokenizer, lambda source, s, e: 5.0 if source.find(inner) <= s < source.find(inner) + len(inner)
                 else 0.1)
    result = pc.compress(documents=docs, rate=0.9, coarse="passages", reorder=True)
    assert result.context.startswith(inner + "\n\n")  # one passage (its blank line does not split it), best first
    assert result.source == preface + "\n\n" + inner + "\n\n" + docs[3]
    prompt, spans = passages.join_documents(docs)
    assert [prompt[s:e] for s, e in spans] == [preface.strip(), inner, docs[3]]
    with pytest.raises(UserError, match="not both"):
        pc.compress("text", documents=docs)
    with pytest.raises(UserError, match="a list of texts"):
        pc.compress(documents="one string")
    with pytest.raises(UserError, match="empty prompt"):
        pc.compress(documents=[" ", ""], coarse="passages")


def test_default_path_is_the_published_selection(smol_tokenizer):
    pc = Planted(smol_tokenizer, lambda source, s, e: float((s * 7919) % 101))
    prompt = "\n\n".join(PARAS)
    force = ["town number 3"]
    result = pc.compress(prompt, rate=0.3, question=QUESTION, force=force)
    # the token path as it was: every step spelled out with the selection module
    source = prompt + "\n\n" + QUESTION
    ids, offsets = pc._encode(source)
    k = selection.budget(ids.shape[1], 0.3, None)
    units = selection.split_units(source, offsets)
    protected = selection.occurrences(source, force) + [(len(prompt) + 2, len(source))]
    forced = selection.protected_units(units, protected, pc.tail_tokens)
    scores = selection.unit_scores(units, pc.token_scores(ids))
    kept = units.with_attached(selection.select_units(scores, units.cost(), forced, k))
    assert result.kept_spans == [units.spans[u] for u in kept]
    assert result.text == "".join(source[s:e] for s, e in result.kept_spans).strip()
    assert result.method == "planted" and result.budget == k
    assert pc.compress(prompt, rate=0.3, question=QUESTION, force=force, coarse="tokens").text == result.text


def test_bad_options_are_refused(smol_tokenizer):
    pc = Planted(smol_tokenizer, _by_keyword({}))
    with pytest.raises(UserError, match="coarse 'words': one of tokens, passages"):
        pc.compress(PARAS[0], coarse="words")
    with pytest.raises(UserError, match="reorder orders passages"):
        pc.compress(PARAS[0], reorder=True)
    with pytest.raises(UserError, match="more than the budget"):
        pc.compress("\n\n".join(PARAS), target_tokens=5, question=QUESTION, coarse="passages")


WORDS = ["alpha", "storm", "river", "서울", "날씨는", "맑고", "번호", "7", "42", "(note)", "x,", "우산을", "road;"]


@st.composite
def prompts(draw):
    paras = draw(st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=14).map(" ".join),
                          min_size=1, max_size=7))
    para = draw(st.integers(0, len(paras) - 1))
    words = paras[para].split(" ")
    start = draw(st.integers(0, len(words) - 1))
    force = " ".join(words[start:start + draw(st.integers(1, 3))])
    return paras, force


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=prompts(), seed=st.integers(0, 2**16), rate=st.floats(0.2, 1.0), question=st.booleans(),
       reorder=st.booleans(), as_documents=st.booleans())
def test_passages_keep_budget_protected_spans_and_whole_words(smol_tokenizer, case, seed, rate, question, reorder,
                                                               as_documents):
    paras, force = case
    generator = torch.Generator().manual_seed(seed)
    pc = Planted(smol_tokenizer, lambda source, s, e: 0.0)
    pc.token_scores = lambda ids: torch.rand(ids.shape[1], generator=generator)
    q = "Which number? 번호는?" if question else None
    kwargs = {"documents": paras} if as_documents else {"prompt": "\n\n".join(paras)}
    try:
        result = pc.compress(**kwargs, rate=rate, question=q, force=[force], coarse="passages", reorder=reorder)
    except UserError as error:
        assert "more than the budget" in str(error)  # the protected words alone exceed a small budget
        return
    used, units, kept = _used_tokens(pc, result)
    k = result.budget
    assert used <= k
    cost = units.cost()
    unkept = [cost[u] for u in range(len(units.spans)) if u not in set(kept) and cost[u]]
    assert used == k or (unkept and used > k - max(unkept))  # filled up to a word that no longer fits
    assert force in result.context
    if q:
        assert result.text.endswith("\n\n" + q) and result.question == q
    assert {u for u in units.token_unit[-pc.tail_tokens:] if u >= 0} <= set(kept)  # the last N_o tokens
    assert "\ufffd" not in result.text
    if reorder:  # each passage of the context: its kept words in order; the best-ranked passage first
        prompt = result.source[:len(result.source) - (len(q) + 2 if q else 0)]
        spans = passages.split_passages(prompt)
        owner = passages.unit_passages(units, result.source, spans)
        pieces = {}
        for u in kept:
            if owner[u] >= 0:
                pieces[owner[u]] = pieces.get(owner[u], "") + result.source[slice(*units.spans[u])]
        assert sorted(result.context.split("\n\n")) == sorted(p.strip() for p in pieces.values() if p.strip())
    else:
        assert result.text == "".join(result.source[s:e] for s, e in result.kept_spans).strip()


def test_spec_defaults_choose_the_path_and_old_specs_still_load(smol_tokenizer):
    assert Defaults.model_validate({"rate": 0.25, "separator": "\n\n"}) == Defaults(rate=0.25)  # written before
    assert Defaults().coarse is None and Defaults().reorder is False
    with pytest.raises(ValueError, match="reorder orders passages"):
        Defaults(reorder=True)

    class Scorer:
        heads = torch.zeros(1)

        def __call__(self, ids):
            return torch.arange(ids.shape[1], dtype=torch.float32) % 5

    spec = PromptCompressorSpec(
        layer=0, heads=[0], n_o=4, kernel=3, defaults={"coarse": "passages", "reorder": True},
        model={"model_type": "llama", "num_hidden_layers": 1, "num_attention_heads": 1, "num_key_value_heads": 1},
        layer_scores=[0.0], head_scores=[[0.0]],
        probe={"needle": "n", "question": "q", "depths": [0.5], "tokens": 100, "filler": "f", "seed": 0})
    pc = PromptCompressor(smol_tokenizer, Scorer(), spec)
    prompt = "\n\n".join(PARAS)
    assert pc.compress(prompt, rate=0.5).method == "ehpc+passages"
    assert pc.compress(prompt, rate=0.5, coarse="tokens").method == "ehpc"
    assert json.loads(spec.model_dump_json())["defaults"]["coarse"] == "passages"


def test_cli_coarse_passages_reorder_and_documents(monkeypatch, capsys, tiny_llama_dir, tmp_path):
    docs = tmp_path / "docs.txt"
    docs.write_text("<doc>".join(PARAS), encoding="utf-8")
    args = ["prompt", "compress", str(tiny_llama_dir), str(docs), "--method", "random", "--rate", "0.6"]
    code, stdout, err = run_cli(monkeypatch, capsys, *args, "--coarse", "passages", "--reorder",
                                "--document-marker", "<doc>", "--question", QUESTION, "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["method"] == "random+passages" and summary["text"].endswith(QUESTION)
    assert "<doc>" not in summary["text"] and summary["tokens_out"] < summary["tokens_in"]
    code, _, err = run_cli(monkeypatch, capsys, *args, "--reorder")
    assert_one_line_error(code, err)
    assert "reorder orders passages" in err
    code, _, err = run_cli(monkeypatch, capsys, "prompt", "compress", str(tiny_llama_dir), str(docs), "--method",
                           "longllmlingua", "--coarse", "passages")
    assert_one_line_error(code, err)
    assert "apply to ehpc, random and ends" in err
