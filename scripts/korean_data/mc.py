"""ko_mc: KMMLU-style 4-option cloze items from sentences of the eval split."""

from __future__ import annotations

import random
import re

from korean_data.corpus import sentences
from korean_data.hangul import final_class
from korean_data.nouns import EOJEOL, split_particle


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
