#!/usr/bin/env python3
"""Build the offline Korean evaluation data (eval/data/ko*, used by eval/tasks/ko_*.yaml).

    python scripts/make_korean_data.py [--seed 0] [--wheel konlpy-0.6.0-py2.py3-none-any.whl]

The judge scores compressed models on Korean the way the LG Aimers server does (KMMLU-Pro /
KMMLU-Redux multiple choice, Ko-LongRAG long-context QA), but offline, from real public text the
project did not write: the Constitution of the Republic of Korea and ten National Assembly bills
shipped in the konlpy 0.6.0 wheel (``konlpy/data/corpus/kolaw/constitution.txt`` and
``konlpy/data/corpus/kobill/*.txt``). Statutes and bills are public works, not protected under
Article 7 of the Korean Copyright Act. The wheel is read as a zip file (nothing installed, no Java).

Writes (see eval/data/ko/README.md):

- ``eval/data/ko/{calibration,eval,long}.jsonl``: cleaned documents ``{"text", "source"}``
  (consecutive articles of the Constitution or paragraphs of one bill) in three splits that
  never share a sentence: documents that share one always land in the same split.
- ``eval/data/ko_particles.jsonl``: 받침 (final consonant) minimal pairs for 이/가, 을/를, 은/는,
  과/와, (으)로 and 이에요/예요, nouns mined from the corpus.
- ``eval/data/ko_mc.jsonl``: KMMLU-style 4-option cloze items from sentences of the eval split.
- ``eval/data/ko_longrag.jsonl``: Ko-LongRAG-like QA over numbered passages of the long split
  with one planted fact and same-template distractor facts, 1,000-8,000 SmolLM2 tokens.

Every random choice comes from ``random.Random(seed + k)`` (one stream per output); files are
read in sorted order and no set or dict is iterated unordered, so two runs give byte-identical
files. The output depends only on the wheel's text, the seed, this script and the tokenizer
(``--tokenizer``, a tokenizer.json, which measures the long-context lengths).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "eval" / "data"
KONLPY = "konlpy==0.6.0"
CONSTITUTION = "konlpy/data/corpus/kolaw/constitution.txt"
KOBILL = "konlpy/data/corpus/kobill/"

SPLIT_SHARES = {"long": 0.35, "eval": 0.40, "calibration": 0.25}   # of the characters
DOC_MIN_CHARS = 600          # consecutive units of one source are grouped into documents of >= this
PAIRS_PER_PHENOMENON = 80
MC_ITEMS = 360                        # the eval split allows ~430 with <= 3 blanks per sentence
LONGRAG_ITEMS = 150
MIN_TOKENS, MAX_TOKENS = 1000, 7700   # context tokens; the prompt adds ~100, under 8,000
PROMPT_LIMIT = 7950                   # rendered ko_longrag prompt, leaving room for the answer
PASSAGE_TOKENS = 350                  # passages: consecutive paragraphs of a long document

# ----------------------------------------------------------------------------------------------
# Hangul
# ----------------------------------------------------------------------------------------------

HANGUL = re.compile(r"[가-힣]")


def jongseong(syllable: str) -> int:
    """Final-consonant index of a Hangul syllable: 0 none, 8 ㄹ."""
    return (ord(syllable) - 0xAC00) % 28


def final_class(word: str) -> str:
    """'V' (no final consonant), 'L' (ㄹ final) or 'C' (another final consonant)."""
    j = jongseong(word[-1])
    return "V" if j == 0 else "L" if j == 8 else "C"


# phenomenon: (form after a consonant, form after a vowel); (으)로 takes 로 after ㄹ as well.
PARTICLE_PAIRS = {
    "subject_i_ga": ("이", "가"),
    "object_eul_reul": ("을", "를"),
    "topic_eun_neun": ("은", "는"),
    "conjunctive_gwa_wa": ("과", "와"),
    "instrumental_euro_ro": ("으로", "로"),
    "copula_ieyo_yeyo": ("이에요", "예요"),
}


def particle(noun: str, phenomenon: str) -> tuple[str, str]:
    """(correct, wrong) allomorph of the phenomenon's particle after `noun`."""
    consonant_form, vowel_form = PARTICLE_PAIRS[phenomenon]
    cls = final_class(noun)
    vowel_like = cls == "V" or (cls == "L" and phenomenon == "instrumental_euro_ro")
    return (vowel_form, consonant_form) if vowel_like else (consonant_form, vowel_form)


def josa(word: str, consonant_form: str, vowel_form: str, l_is_vowel: bool = False) -> str:
    cls = final_class(word)
    return vowel_form if cls == "V" or (l_is_vowel and cls == "L") else consonant_form


# ----------------------------------------------------------------------------------------------
# Source text
# ----------------------------------------------------------------------------------------------


def find_wheel(path: str | None) -> Path:
    if path:
        return Path(path)
    if os.environ.get("KONLPY_WHEEL"):
        return Path(os.environ["KONLPY_WHEEL"])
    found = sorted(glob.glob("/tmp/konlpy/konlpy-0.6.0-*.whl"))
    if found:
        return Path(found[0])
    target = Path(tempfile.mkdtemp(prefix="konlpy-"))
    print(f"downloading {KONLPY} into {target}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", KONLPY,
                    "-d", str(target)], check=True)
    return sorted(target.glob("konlpy-0.6.0-*.whl"))[0]


def read_sources(wheel: Path) -> list[tuple[str, str, str]]:
    """[(source, text, sha256)] for the Constitution and the sorted bills."""
    with zipfile.ZipFile(wheel) as z:
        names = [CONSTITUTION] + sorted(n for n in z.namelist()
                                        if n.startswith(KOBILL) and n.endswith(".txt"))
        out = []
        for name in names:
            data = z.read(name)
            source = "constitution" if name == CONSTITUTION else "kobill/" + name[len(KOBILL):]
            out.append((source, data.decode("utf-8"), hashlib.sha256(data).hexdigest()))
    if len(out) != 11:
        raise SystemExit(f"{wheel}: expected the constitution and 10 bills, found {len(out)} files")
    return out


def collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def constitution_units(text: str) -> list[list[str]]:
    """The preamble and each article (제N조 with its clauses and items), as lists of lines."""
    units: list[list[str]] = []
    for raw in text.replace("\r", "").split("\n"):
        line = collapse(raw)
        if not line or line == "대한민국헌법" or "부칙보기" in line:
            continue
        if re.fullmatch(r"제\d+(장|절|관) .*", line):      # chapter / section headings
            continue
        if re.match(r"제\d+조(의\d+)? ", line) or not units:
            units.append([line])
        else:
            units[-1].append(line)
    return units


ITEM_MARK = re.compile(r"([①-⑳]|○|∙|※|\*\s|(첫|둘|셋|넷)째|\d+(의\d+)?\.\s|[가나다라마바사아자차카타파하]\.\s)")
# Unindented lines that always start a paragraph: an article heading or an amendment instruction
# ("제43조의2(협의단계)", "제10조의4를 ...", "제22조제1항에 ...", "제35조 및 제36조를 ..."; not
# "제7조 중 ...", which continues "제44조제1항" in the cost statements), a numbered section
# heading ("2.  기본 계획", two spaces in the source), a definition (": ...") or a unit note.
BLOCK_START = re.compile(r"(제\d+조(의\d+)?(제\d+항)?(제\d+호)?(\(|[에을를]\s|\s및\s제\d+조|\s중\s“)|\d+\.\s{2,}|:|단위\s*:|자료\s*:)")
SENTENCE_END = re.compile(r"[.?!][\"”’)\]」』]*$")
SECTION_HEAD = re.compile(r"(비용추계서|미첨부사유서|재원조달계획서|일부개정법률안|동의안)$")


def hangul_share(text: str) -> float:
    visible = [c for c in text if not c.isspace()]
    return len(HANGUL.findall(text)) / max(1, len(visible))


def bill_lines(text: str) -> list[tuple[str, bool, bool]]:
    """Content lines of a bill as (stripped text, indented, had trailing space), noise removed:
    the cover (title, bill number, date, proposers: everything before 제안이유), page markers,
    the old/new comparison table (신·구조문대비표: two interleaved columns, up to the cost
    statement or the end), the author block of cost statements (names, phone numbers), formulas,
    and table cells (lines with one Hangul syllable or none, except a sentence end such as "다.")."""
    lines = []
    started = False
    skipping = None          # None, "table" or "author"
    for raw in text.replace("\r", "").replace("\x0c", "").split("\n"):
        stripped = raw.strip()
        if not stripped:
            continue
        if not started:
            started = stripped.startswith("제안이유")
            if not started:
                continue
        if "조문대비표" in stripped:
            skipping = "table"
            continue
        if "작성자" in stripped and skipping != "table":
            skipping = "author"
            continue
        if skipping == "table" and "비용추계" in stripped:
            skipping = None
        if skipping == "author" and (re.match(r"\d+\.\s", stripped) or SECTION_HEAD.search(stripped)):
            skipping = None
        if skipping:
            continue
        if re.fullmatch(r"-\s*\d+\s*-", stripped) or re.fullmatch(r"[-–.\s]+", stripped):
            continue
        if re.fullmatch(r"법률\s+제\s+호", stripped):
            continue
        hangul = len(HANGUL.findall(stripped))
        if hangul == 0 or (hangul == 1 and not SENTENCE_END.search(stripped)):   # keeps "다."
            continue
        if re.search(r"[×=<>]", stripped) and hangul_share(stripped) < 0.5:
            continue
        lines.append((stripped, raw[:1].isspace(), raw.endswith((" ", "\t"))))
    return lines


def bill_paragraphs(text: str) -> list[str]:
    """Join hard-wrapped lines into paragraphs. A line continues the previous one unless the
    previous line ends a sentence, is short (a heading) or a section title, or the line starts a
    block or an item (an item only when indented or after a short line). The join keeps a space
    where the previous line had a trailing one or the line is indented; otherwise the PDF
    extraction broke a word, and the halves are glued."""
    paragraphs: list[str] = []
    prev = None
    for text_, indented, trailing in bill_lines(text):
        if prev is None:
            paragraphs.append(text_)
        else:
            p_text, p_trailing = prev
            short = len(p_text) < 20 and not p_trailing
            new = (SENTENCE_END.search(p_text) or short or SECTION_HEAD.search(p_text)
                   or p_text.startswith((":", "자료")) or (BLOCK_START.match(text_) and not indented)
                   or (ITEM_MARK.match(text_) and (indented or short)))
            if new:
                paragraphs.append(text_)
            else:
                paragraphs[-1] += (" " if p_trailing or indented else "") + text_
        prev = (text_, trailing)
    return [collapse(p) for p in paragraphs]


def is_prose(paragraph: str) -> bool:
    """At least 12 Hangul syllables, mostly Hangul, no table residue, headings or titles."""
    visible = [c for c in paragraph if not c.isspace()]
    hangul = len(HANGUL.findall(paragraph))
    return (hangul >= 12 and hangul / len(visible) >= 0.5 and "--" not in paragraph
            and not paragraph.startswith(("제안이유", "주요내용", "참고사항", ":", "단위", "자료"))
            and not SECTION_HEAD.search(paragraph))


def sentences(text: str) -> list[str]:
    """Sentences: split at line breaks and after . ? ! followed by whitespace."""
    out = []
    for line in text.split("\n"):
        out += [s.strip() for s in re.split(r"(?<=[.?!])\s+", line) if s.strip()]
    return out


# ----------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------


def corpus_units(sources: list[tuple[str, str, str]]) -> list[dict]:
    """Units (an article, a bill paragraph) in source order, exact duplicates dropped (the four
    parental-leave bills repeat whole paragraphs)."""
    units, seen = [], set()
    for source, text, _ in sources:
        if source == "constitution":
            raw = ["\n".join(u) for u in constitution_units(text)]
        else:
            raw = [p for p in bill_paragraphs(text) if is_prose(p)]
        for i, unit in enumerate(raw):
            key = collapse(unit)
            if key in seen:
                continue
            seen.add(key)
            units.append({"source": source, "index": i, "text": unit})
    return units


def documents(units: list[dict]) -> list[dict]:
    """Consecutive units of one source, grouped into documents of >= DOC_MIN_CHARS."""
    docs: list[dict] = []
    for u in units:
        if docs and docs[-1]["source"] == u["source"] and len(docs[-1]["text"]) < DOC_MIN_CHARS:
            docs[-1]["text"] += "\n" + u["text"]
        else:
            docs.append({"source": u["source"], "text": u["text"]})
    # A short tail joins the previous document of the same source.
    merged: list[dict] = []
    for d in docs:
        if merged and merged[-1]["source"] == d["source"] and len(d["text"]) < DOC_MIN_CHARS // 2:
            merged[-1]["text"] += "\n" + d["text"]
        else:
            merged.append(d)
    return merged


def components(docs: list[dict]) -> list[list[int]]:
    """Groups of documents linked by a shared sentence (one contains a sentence of the other)."""
    parent = list(range(len(docs)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, d in enumerate(docs):
        for s in sentences(d["text"]):
            if len(s) < 6:
                continue
            for j, other in enumerate(docs):
                if j != i and s in other["text"]:
                    parent[find(j)] = find(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(docs)):
        groups.setdefault(find(i), []).append(i)
    return [groups[k] for k in sorted(groups)]


def make_splits(docs: list[dict], rng: random.Random) -> dict[str, list[dict]]:
    """Components in a seeded shuffle, each to the split furthest below its character share."""
    comps = components(docs)
    rng.shuffle(comps)
    total = sum(len(d["text"]) for d in docs)
    chars = {name: 0 for name in SPLIT_SHARES}
    assigned: dict[str, list[int]] = {name: [] for name in SPLIT_SHARES}
    for comp in comps:
        name = min(SPLIT_SHARES, key=lambda n: (chars[n] / total - SPLIT_SHARES[n]))
        assigned[name] += comp
        chars[name] += sum(len(docs[i]["text"]) for i in comp)
    return {name: [docs[i] for i in sorted(idx)] for name, idx in assigned.items()}


# ----------------------------------------------------------------------------------------------
# Nouns
# ----------------------------------------------------------------------------------------------

AGREEING = ["으로", "이", "가", "을", "를", "은", "는", "과", "와", "로"]
NEUTRAL = ["에게", "에서", "까지", "부터", "의", "에", "도", "만"]
EOJEOL = re.compile(r"(?<![가-힣0-9])([가-힣]{2,6})(?=[\s,.·)」”’]|$)")
# Final syllables of verb/adjective stems, nominalisations and inflected forms, not nouns.
NOT_NOUN_FINAL = set("하되에적함됨임음기서고며게지여어아면나라든던은는을를이가와과로의도만들것수등바중및또으려없있같많않받")
NOT_NOUN_START = ("이", "그", "저", "각", "당", "동", "본", "위", "해", "전", "후", "모든", "다른")


def split_particle(eojeol: str) -> tuple[str, str] | None:
    for p in AGREEING + NEUTRAL:
        if eojeol.endswith(p) and len(eojeol) - len(p) >= 2:
            return eojeol[: -len(p)], p
    return None


def agrees(noun: str, p: str) -> bool:
    cls = final_class(noun)
    if p in ("이", "을", "은", "과"):
        return cls != "V"
    if p in ("가", "를", "는", "와"):
        return cls == "V"
    if p == "으로":
        return cls == "C"
    if p == "로":
        return cls in ("V", "L")
    return True


def mine_nouns(texts: list[str]) -> dict[str, int]:
    """{noun: count}: 2-4-syllable words seen directly followed by a particle whose allomorph
    agrees with the 받침 rule. A vowel-final word must also be seen with a second, different
    particle: a verb stem + 는/가 ("따르는", "지내다가") looks like a vowel-final noun + particle,
    while a consonant-final stem + 이/을/은/과/으로 is rare once 없/있/같-final stems are excluded."""
    seen: dict[str, set] = {}
    counts: Counter = Counter()
    for text in texts:
        for m in EOJEOL.finditer(text):
            split = split_particle(m.group(1))
            if split is None:
                continue
            noun, p = split
            if not 2 <= len(noun) <= 4 or not agrees(noun, p):
                continue
            seen.setdefault(noun, set()).add(p)
            counts[noun] += 1
    nouns = {}
    for noun in sorted(seen):
        ps = seen[noun]
        if not any(p in AGREEING for p in ps) or (final_class(noun) == "V" and len(ps) < 2):
            continue
        if noun[-1] in NOT_NOUN_FINAL or noun.startswith(NOT_NOUN_START):
            continue
        nouns[noun] = counts[noun]
    return nouns


# ----------------------------------------------------------------------------------------------
# ko_particles
# ----------------------------------------------------------------------------------------------

FRAMES = {
    "subject_i_ga": ["{N}{P} 중요하다.", "무엇보다 {N}{P} 필요하다.", "이번 회의에서 {N}{P} 논의되었다.",
                     "올해는 {N}{P} 크게 달라졌다.", "지금은 {N}{P} 가장 시급하다."],
    "object_eul_reul": ["우리는 {N}{P} 검토했다.", "위원회는 {N}{P} 다시 논의하였다.",
                        "정부는 {N}{P} 새로 마련했다.", "그들은 {N}{P} 자세히 설명했다.",
                        "모두가 {N}{P} 존중해야 한다."],
    "topic_eun_neun": ["{N}{P} 매우 중요하다.", "{N}{P} 이미 확정되었다.", "이 경우 {N}{P} 변경될 수 있다.",
                       "{N}{P} 다음 달부터 적용된다.", "{N}{P} 누구에게나 필요하다."],
    "conjunctive_gwa_wa": ["{N}{P} 관련된 내용을 검토했다.", "{N}{P} 예산을 함께 논의했다.",
                           "우리는 {N}{P} 교육을 모두 중시한다.", "{N}{P} 비슷한 사례가 늘고 있다.",
                           "이 문제는 {N}{P} 밀접하게 연결되어 있다."],
    "instrumental_euro_ro": ["{N}{P} 결정되었다.", "그 문제는 {N}{P} 해결할 수 있다.",
                             "모든 절차는 {N}{P} 정한다.", "회의의 주제는 {N}{P} 바뀌었다.",
                             "그 권한은 {N}{P} 넘어갔다."],
    "copula_ieyo_yeyo": ["이것은 {N}{P}.", "가장 중요한 것은 {N}{P}.", "오늘 회의의 주제는 {N}{P}.",
                         "제가 찾던 것이 바로 {N}{P}.", "다음 안건은 {N}{P}."],
}


def pick(rng: random.Random, pool: list[str], n: int) -> list[str]:
    """n nouns from pool, all distinct while the pool lasts."""
    out: list[str] = []
    while len(out) < n:
        out += rng.sample(pool, min(len(pool), n - len(out)))
    return out


def make_particles(rng: random.Random, nouns: list[str], per_phenomenon: int) -> list[dict]:
    by_class = {c: [n for n in nouns if final_class(n) == c] for c in "VLC"}
    consonant = by_class["C"] + by_class["L"]
    items = []
    for phenomenon, frames in FRAMES.items():
        half = per_phenomenon // 2
        if phenomenon == "instrumental_euro_ro":
            # Good form 로 for half the pairs (vowel- and ㄹ-final nouns), 으로 for the other half.
            chosen = (pick(rng, by_class["V"], half - half // 2) + pick(rng, by_class["L"], half // 2)
                      + pick(rng, by_class["C"], per_phenomenon - half))
        else:
            chosen = pick(rng, by_class["V"], half) + pick(rng, consonant, per_phenomenon - half)
        for noun in chosen:
            frame = rng.choice(frames)
            good_p, bad_p = particle(noun, phenomenon)
            items.append({"good": frame.format(N=noun, P=good_p), "bad": frame.format(N=noun, P=bad_p),
                          "phenomenon": phenomenon, "noun": noun})
    rng.shuffle(items)
    return items


# ----------------------------------------------------------------------------------------------
# ko_mc
# ----------------------------------------------------------------------------------------------

BLANK = "(    )"
MC_INSTRUCTION = "다음 문장의 빈칸에 들어갈 말로 가장 알맞은 것은?"
LEAD_MARK = re.compile(r"^(제\d+조(의\d+)?(\([^)]*\))?\s*)?([①-⑳]\s*)?(\d+\.\s*|[가-하]\.\s*)?")


def mc_sentences(docs: list[dict]) -> list[tuple[str, str]]:
    """(sentence, source): distinct complete sentences of 15-300 characters (ending in 다. or, in the
    bills' nominal style, 함. / 임. / 음.), article and item marks removed."""
    out, seen = [], set()
    for d in docs:
        for s in sentences(d["text"]):
            s = LEAD_MARK.sub("", s).strip()
            if re.search(r"[다함임음]\.$", s) and 15 <= len(s) <= 300 and "\"" not in s and s not in seen:
                seen.add(s)
                out.append((s, d["source"]))
    return out


def blank_candidates(sentence: str, nouns: dict[str, int]) -> list[tuple[int, str]]:
    """(offset, noun) of each lexicon noun that is a whole word or a word minus its particle and
    occurs once in the sentence."""
    out = []
    for m in EOJEOL.finditer(sentence):
        split = split_particle(m.group(1))
        noun = split[0] if split else m.group(1)
        if noun in nouns and sentence.count(noun) == 1:
            out.append((m.start(1), noun))
    return out


def make_mc(rng: random.Random, docs: list[dict], nouns: dict[str, int], corpus_text: str,
            n_items: int) -> list[dict]:
    pool = mc_sentences(docs)
    lexicon = sorted(nouns)
    # Pass 1 blanks one noun per sentence, pass 2 a second noun where there is one, ...
    order = list(range(len(pool)))
    rng.shuffle(order)
    used: dict[int, set] = {}
    items = []
    for _ in range(3):
        for k in order:
            if len(items) >= n_items:
                break
            sentence, source = pool[k]
            cands = [c for c in blank_candidates(sentence, nouns) if c[1] not in used.get(k, set())]
            if not cands:
                continue
            offset, answer = rng.choice(cands)
            question = sentence[:offset] + BLANK + sentence[offset + len(answer):]
            cls = final_class(answer)
            # Distractors: same final-consonant class (the particle after the blank gives nothing
            # away), same length (else +-1 syllable), not in the sentence, no substring relation
            # with the answer, and not turning the question into a sentence of the corpus.
            fits = []
            for slack in (0, 1):
                fits = [n for n in lexicon
                        if n != answer and final_class(n) == cls and abs(len(n) - len(answer)) <= slack
                        and n not in sentence and answer not in n and n not in answer
                        and question.replace(BLANK, n) not in corpus_text]
                if len(fits) >= 3:
                    break
            if len(fits) < 3:
                continue
            used.setdefault(k, set()).add(answer)
            items.append({"sentence": sentence, "question": question, "answer_text": answer,
                          "distractors": rng.sample(fits, 3), "source": source})
    if len(items) < n_items:
        raise SystemExit(f"ko_mc: only {len(items)} items from the eval split")
    letters = list("ABCD") * (n_items // 4 + 1)
    letters = letters[:n_items]
    rng.shuffle(letters)
    out = []
    for it, letter in zip(items, letters):
        options = list(it["distractors"])
        rng.shuffle(options)
        options.insert("ABCD".index(letter), it["answer_text"])
        out.append({"question": f"{MC_INSTRUCTION}\n{it['question']}",
                    **dict(zip("ABCD", options)), "answer": letter, "source": it["source"]})
    return out


# ----------------------------------------------------------------------------------------------
# ko_longrag
# ----------------------------------------------------------------------------------------------

SURNAMES = list("김이박최정강조윤장임한오서신권황안송류홍")
GIVEN = list("민서준지현우수영은하도연예윤진호성재경승유혜주원태동규희찬")
ORG_PREFIXES = ["한빛", "새솔", "푸른누리", "다온", "가람", "늘봄", "해오름", "별빛", "솔내", "미리내",
                "한울", "온누리", "바른길", "초록빛", "은하수", "새벽별", "맑은샘", "너른들"]
ORG_TYPES = ["연구원", "재단", "협회", "위원회", "진흥원", "문화원", "복지관", "연구소"]
ROLES = ["원장", "이사장", "사무총장", "위원장", "대변인", "부원장", "사무국장", "감사", "회장", "연구실장"]
REGIONS = ["동해안", "서해안", "남부권", "북부권", "내륙권", "도서지역", "산간지역", "도심권"]
TOPICS = ["청년 주거 지원", "노후 교량 보수", "공공 도서관 확충", "농촌 디지털 교육", "하천 정비",
          "전기버스 보급", "어린이집 확충", "소상공인 경영 지원", "산림 복원", "해양 쓰레기 수거",
          "경로당 냉난방 개선", "향토 축제 육성"]
EVENTS = ["학술대회", "정책 토론회", "문화 축제", "채용 박람회", "기술 전시회", "청소년 캠프", "국제 포럼"]
CITIES = ["부산", "대구", "인천", "광주", "대전", "울산", "세종", "수원", "춘천", "강릉", "청주", "천안",
          "전주", "목포", "여수", "포항", "경주", "안동", "창원", "진주", "제주", "원주", "군산", "순천"]
TEMPLATES = ["person", "count", "budget", "place"]
LONGRAG_INSTRUCTION = "다음 문서들을 읽고 질문에 답하십시오."


def fact_key(template: str, rng: random.Random) -> tuple:
    """The asked-about entity: (org prefix, org type, role) / (prefix, type) / (region, topic) /
    (edition, prefix, type, event)."""
    if template == "person":
        return (rng.choice(ORG_PREFIXES), rng.choice(ORG_TYPES), rng.choice(ROLES))
    if template == "count":
        return (rng.choice(ORG_PREFIXES), rng.choice(ORG_TYPES))
    if template == "budget":
        return (rng.choice(REGIONS), rng.choice(TOPICS))
    return (rng.randint(2, 30), rng.choice(ORG_PREFIXES), rng.choice(ORG_TYPES), rng.choice(EVENTS))


def fact_value(template: str, rng: random.Random) -> str:
    if template == "person":
        return rng.choice(SURNAMES) + "".join(rng.sample(GIVEN, 2))
    if template == "count":
        return f"{rng.randint(12, 980)}명"
    if template == "budget":
        return f"{rng.randint(3, 95) * 10 + rng.randint(1, 9)}억원"
    return rng.choice(CITIES)


def fact_text(template: str, key: tuple, value: str) -> tuple[str, str]:
    """(planted sentence, question) with particles agreeing with the words they follow."""
    if template == "person":
        prefix, kind, role = key
        o = prefix + kind
        ro = josa(role, "으로", "로", l_is_vowel=True)
        return (f"{o}의 신임 {role}{ro} {value}{josa(value, '이', '가')} 임명되었다.",
                f"{o}의 신임 {role}{ro} 임명된 사람은 누구입니까?")
    if template == "count":
        o = key[0] + key[1]
        return (f"{o}의 올해 신규 채용 인원은 {value}이다.", f"{o}의 올해 신규 채용 인원은 몇 명입니까?")
    if template == "budget":
        region, topic = key
        return (f"{region} {topic} 사업에 배정된 예산은 {value}이다.",
                f"{region} {topic} 사업에 배정된 예산은 얼마입니까?")
    n, prefix, kind, event = key
    name = f"제{n}회 {prefix}{kind} {event}"
    topic = josa(event, "은", "는")
    return (f"{name}{topic} {value}에서 열린다.", f"{name}{topic} 어디에서 열립니까?")


def keys_disjoint(template: str, a: tuple, b: tuple) -> bool:
    """Keys of one item share no component (organisation prefix or type, role, region, topic,
    event; the edition number excepted), so no distractor fact names the asked-for entity."""
    parts = lambda k: set(k[1:]) if template == "place" else set(k)  # noqa: E731
    return not (parts(a) & parts(b))


def passages_of(docs: list[dict], n_tok) -> list[str]:
    """Consecutive paragraphs of one long document, about PASSAGE_TOKENS tokens each."""
    out = []
    for d in docs:
        first = len(out)
        current: list[str] = []
        for para in d["text"].split("\n"):
            current.append(para)
            if n_tok("\n".join(current)) >= PASSAGE_TOKENS:
                out.append("\n".join(current))
                current = []
        if current:
            # A short tail joins the document's previous passage.
            if len(out) > first and n_tok("\n".join(current)) < PASSAGE_TOKENS // 3:
                out[-1] += "\n" + "\n".join(current)
            else:
                out.append("\n".join(current))
    return out


def longrag_prompt(question: str, context: str) -> str:
    """Mirror of ko_longrag.yaml's doc_to_text (used to keep the whole prompt in bounds)."""
    return f"{LONGRAG_INSTRUCTION}\n질문: {question}\n\n{context}\n\n질문: {question}\n답:"


def make_longrag(rng: random.Random, docs: list[dict], n_tok, n_items: int) -> list[dict]:
    pool = passages_of(docs, n_tok)
    pool_tokens = [n_tok(p) for p in pool]
    targets = [MIN_TOKENS + (MAX_TOKENS - MIN_TOKENS) * (i + rng.random()) / n_items
               for i in range(n_items)]
    rng.shuffle(targets)
    templates = [TEMPLATES[i % len(TEMPLATES)] for i in range(n_items)]
    rng.shuffle(templates)
    items, asked = [], set()
    for target, template in zip(targets, templates):
        while True:
            # Passages: a seeded shuffle of the pool, greedily filled up to the target length.
            order = list(range(len(pool)))
            rng.shuffle(order)
            chosen, total = [], 0
            for k in order:
                t = pool_tokens[k] + 8
                if total + t <= target:
                    chosen.append(k)
                    total += t
                if total >= target - 60:
                    break
            if len(chosen) < 3:
                continue
            texts = [pool[k] for k in chosen]
            n_facts = min(len(texts), 1 + rng.randint(2, 4))
            key = fact_key(template, rng)
            if (template, key) in asked:        # every item asks about a different entity
                continue
            keys = [key]
            while len(keys) < n_facts:
                k2 = fact_key(template, rng)
                if all(keys_disjoint(template, k2, k) for k in keys):
                    keys.append(k2)
            values: list[str] = []
            while len(values) < n_facts:
                v = fact_value(template, rng)
                if v not in values and all(v not in t for t in texts) \
                        and not any(v in w or w in v for w in values):
                    values.append(v)
            slots = rng.sample(range(len(texts)), n_facts)   # slots[0] holds the asked-for fact
            pieces = []
            for i, text in enumerate(texts):
                paras = text.split("\n")
                if i in slots:
                    f = slots.index(i)
                    sentence, _ = fact_text(template, keys[f], values[f])
                    paras.insert(rng.randint(1, len(paras)), sentence)
                pieces.append(f"문서 {i + 1}: " + "\n".join(paras))
            context = "\n\n".join(pieces)
            tokens = n_tok(context)
            _, question = fact_text(template, key, values[0])
            if MIN_TOKENS <= tokens <= MAX_TOKENS and n_tok(longrag_prompt(question, context)) <= PROMPT_LIMIT:
                break
        asked.add((template, key))
        items.append({"context": context, "question": question, "answer": values[0],
                      "passages": len(texts), "target_passage": slots[0] + 1, "tokens": tokens,
                      "template": template, "distractors": n_facts - 1})
    return items


# ----------------------------------------------------------------------------------------------


def rel(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", default=None,
                    help="konlpy 0.6.0 wheel (default: $KONLPY_WHEEL, /tmp/konlpy/*.whl, else pip download)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT), help="output folder (default eval/data)")
    ap.add_argument("--tokenizer", default=None,
                    help="tokenizer.json that measures ko_longrag contexts (default: the bundled SmolLM2-135M's)")
    args = ap.parse_args()

    from tokenizers import Tokenizer

    if args.tokenizer:
        tok_path = Path(args.tokenizer)
    else:  # the bundled model's tokenizer (built from its GGUF once, cached under $COMPRESSOR_HOME)
        from compressor.models.builtin import materialize_builtin

        tok_path = materialize_builtin("smollm2-135m") / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(tok_path))
    n_tok = lambda s: len(tokenizer.encode(s, add_special_tokens=False).ids)  # noqa: E731

    wheel = find_wheel(args.wheel)
    sources = read_sources(wheel)
    for source, text, digest in sources:
        print(f"read {source}: {len(text)} characters, sha256 {digest[:16]}")
    out = Path(args.out).resolve()

    docs = documents(corpus_units(sources))
    splits = make_splits(docs, random.Random(args.seed))
    for name in ("calibration", "eval", "long"):
        rows = splits[name]
        path = out / "ko" / f"{name}.jsonl"
        write_jsonl(path, rows)
        print(f"wrote {rel(path)}: {len(rows)} documents, {sum(len(r['text']) for r in rows)} characters, "
              f"{sum(len(r['text'].encode()) for r in rows)} bytes, {sum(n_tok(r['text']) for r in rows)} tokens")

    corpus_text = "\n".join(d["text"] for d in docs)
    nouns = mine_nouns([d["text"] for d in docs])
    classes = Counter(final_class(n) for n in nouns)
    print(f"mined {len(nouns)} nouns (vowel-final {classes['V']}, ㄹ-final {classes['L']}, "
          f"other consonant {classes['C']})")

    pairs = make_particles(random.Random(args.seed + 1), sorted(nouns), PAIRS_PER_PHENOMENON)
    path = out / "ko_particles.jsonl"
    write_jsonl(path, pairs)
    counts = Counter(p["phenomenon"] for p in pairs)
    print(f"wrote {rel(path)}: {len(pairs)} pairs, " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

    mc = make_mc(random.Random(args.seed + 2), splits["eval"], nouns, corpus_text, MC_ITEMS)
    path = out / "ko_mc.jsonl"
    write_jsonl(path, mc)
    letters = Counter(it["answer"] for it in mc)
    print(f"wrote {rel(path)}: {len(mc)} items, answers " + ", ".join(f"{k} {v}" for k, v in sorted(letters.items())))

    rag = make_longrag(random.Random(args.seed + 3), splits["long"], n_tok, LONGRAG_ITEMS)
    path = out / "ko_longrag.jsonl"
    write_jsonl(path, rag)
    toks = sorted(it["tokens"] for it in rag)
    kinds = Counter(it["template"] for it in rag)
    print(f"wrote {rel(path)}: {len(rag)} items ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}), "
          f"context tokens min {toks[0]} median {toks[len(toks) // 2]} max {toks[-1]}, "
          f"passages {min(it['passages'] for it in rag)}-{max(it['passages'] for it in rag)}")


if __name__ == "__main__":
    main()
