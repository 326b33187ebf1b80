"""Hangul: the final consonant (받침) of a syllable and the particle forms that agree with it."""

from __future__ import annotations

import re


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
