"""The public Korean source text (konlpy 0.6.0 wheel, read as a zip), cleaned into documents, and the three
splits that never share a sentence."""

from __future__ import annotations

import glob
import hashlib
import os
import random
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from korean_data.hangul import HANGUL

KONLPY = "konlpy==0.6.0"
CONSTITUTION = "konlpy/data/corpus/kolaw/constitution.txt"
KOBILL = "konlpy/data/corpus/kobill/"
SPLIT_SHARES = {"long": 0.35, "eval": 0.40, "calibration": 0.25}   # of the characters
DOC_MIN_CHARS = 600          # consecutive units of one source are grouped into documents of >= this


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
