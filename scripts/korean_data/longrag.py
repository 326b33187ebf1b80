"""ko_longrag: Ko-LongRAG-like QA over numbered passages of the long split, one planted fact and
same-template distractor facts."""

from __future__ import annotations

import random

from korean_data.hangul import josa

MIN_TOKENS, MAX_TOKENS = 1000, 7700   # context tokens; the prompt adds ~100, under 8,000
PROMPT_LIMIT = 7950                   # rendered ko_longrag prompt, leaving room for the answer
PASSAGE_TOKENS = 350                  # passages: consecutive paragraphs of a long document


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
