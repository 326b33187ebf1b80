"""Nouns mined from the corpus: words seen with an agreeing particle, by their final consonant."""

from __future__ import annotations

import re
from collections import Counter

from korean_data.hangul import final_class


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
