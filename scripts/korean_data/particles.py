"""ko_particles: 받침 minimal pairs (이/가, 을/를, 은/는, 과/와, (으)로, 이에요/예요) in sentence frames."""

from __future__ import annotations

import random

from korean_data.hangul import final_class, particle


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
