#!/usr/bin/env python3
"""Generate the data of the two lm-evaluation-harness tasks in eval/tasks/.

    python scripts/make_eval_data.py [--seed 0]

writes

- ``eval/data/minimal_pairs.jsonl``: BLiMP-style grammatical minimal pairs
  ``{"good", "bad", "phenomenon"}``, built from the small hand-written lexicons below, the same
  number of pairs for each phenomenon, shuffled with the seed.
- ``eval/data/retrieval.jsonl``: pass-key and key-value retrieval items
  ``{"context", "question", "answer", "answer_prefix", "kind", "n_tokens", "depth"}``: a needle
  inserted between paragraphs of real filler text (``eval/data/corpus/long.jsonl``, CPython
  docstrings) at a depth of 0.1-0.9, in contexts of 512-2048 SmolLM2 tokens by default
  (``n_tokens`` counts the context alone, measured with the SmolLM2 tokenizer). One item in
  three is a pass key; the others ask for one of seven "secret code" entries.

The pairs are drawn from ``random.Random(seed)``, the retrieval items from
``random.Random(seed + 1)``; the output depends only on the seed, the options, the lexicons, the
corpus file and the tokenizer. Nothing is randomised at evaluation time. See eval/README.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "eval" / "data"
CORPUS_LONG = OUT / "corpus" / "long.jsonl"

PAIRS_PER_PHENOMENON = 40

from grammar_lexicon import (  # noqa: E402 (scripts/ is on sys.path when run as a script)
    AGENTS, INTRANSITIVE, ADVERBIALS, PP_SUBJECTS, PP_PREDICATES, PEOPLE, RC_VERBS, RC_PREDICATES, IRREGULAR_PAST, SUBJECTS_SG, PARTICIPLES, DETERMINERS, NAMES, DET_VERBS, OBJECTS, MALE, FEMALE, REFLEXIVE_VERBS, PLURAL_PEOPLE, GENDERED_SG, THERE_NOUNS, QUANTIFIERS,
)


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def phenomenon_candidates() -> dict[str, list[tuple[str, str]]]:
    """Every (good, bad) pair of every phenomenon; balanced singular/plural where it applies."""
    c: dict[str, list[tuple[str, str]]] = {}

    # Subject-verb agreement, adjacent: "The dogs run every day." / "The dogs runs every day."
    rows = []
    for (sg, pl), (v3, vb), adv in itertools.product(AGENTS, INTRANSITIVE, ADVERBIALS):
        rows.append((f"The {sg} {v3} {adv}.", f"The {sg} {vb} {adv}."))
        rows.append((f"The {pl} {vb} {adv}.", f"The {pl} {v3} {adv}."))
    c["sv_agreement_simple"] = rows

    # Across a prepositional phrase whose noun has the other number (the attractor).
    rows = []
    for (s, p, prep, a_s, a_p), (vs, vp, rest) in itertools.product(PP_SUBJECTS, PP_PREDICATES):
        rows.append((f"The {s} {prep} {a_p} {vs} {rest}.", f"The {s} {prep} {a_p} {vp} {rest}."))
        rows.append((f"The {p} {prep} {a_s} {vp} {rest}.", f"The {p} {prep} {a_s} {vs} {rest}."))
    c["sv_agreement_prepositional_phrase"] = rows

    # Across a relative clause: subject and object relatives, attractor of the other number.
    rows = []
    for (s1, p1), (s2, p2), verb, (vs, vp, rest) in itertools.product(
            PEOPLE, PEOPLE, RC_VERBS, RC_PREDICATES):
        if s1 == s2:
            continue
        rows.append((f"The {s1} who {verb} the {p2} {vs} {rest}.",
                     f"The {s1} who {verb} the {p2} {vp} {rest}."))
        rows.append((f"The {p1} who {verb} the {s2} {vp} {rest}.",
                     f"The {p1} who {verb} the {s2} {vs} {rest}."))
        rows.append((f"The {s1} that the {p2} {verb} {vs} {rest}.",
                     f"The {s1} that the {p2} {verb} {vp} {rest}."))
        rows.append((f"The {p1} that the {s2} {verb} {vp} {rest}.",
                     f"The {p1} that the {s2} {verb} {vs} {rest}."))
    c["sv_agreement_relative_clause"] = rows

    # Irregular past tense versus an over-regularised form.
    c["irregular_past_tense"] = [
        (f"{subj} {past} {obj}.", f"{subj} {wrong} {obj}.")
        for subj, (past, wrong, obj) in itertools.product(SUBJECTS_SG, IRREGULAR_PAST)]

    # Past participle versus simple past: "had gone"/"had went" and "went"/"gone".
    rows = []
    for subj, (past, part, comp) in itertools.product(SUBJECTS_SG, PARTICIPLES):
        rows.append((f"{subj} had {part} {comp}.", f"{subj} had {past} {comp}."))
        rows.append((f"Yesterday {subj[0].lower() + subj[1:]} {past} {comp}.",
                     f"Yesterday {subj[0].lower() + subj[1:]} {part} {comp}."))
    c["irregular_past_participle"] = rows

    # Determiner-noun number agreement; the error changes the noun or the determiner.
    rows = []
    for name, verb, (ds, dp), (ns, np_) in itertools.product(NAMES, DET_VERBS, DETERMINERS,
                                                            OBJECTS):
        rows.append((f"{name} {verb} {ds} {ns}.", f"{name} {verb} {ds} {np_}."))
        rows.append((f"{name} {verb} {dp} {np_}.", f"{name} {verb} {dp} {ns}."))
        rows.append((f"{name} {verb} {ds} {ns}.", f"{name} {verb} {dp} {ns}."))
        rows.append((f"{name} {verb} {dp} {np_}.", f"{name} {verb} {ds} {np_}."))
    c["determiner_noun_agreement"] = rows

    # Reflexive gender: "The girl saw herself." / "The girl saw himself."
    c["anaphor_gender_agreement"] = [
        (f"The {n} {v} {refl}.", f"The {n} {v} {'herself' if refl == 'himself' else 'himself'}.")
        for (n, refl), v in itertools.product(GENDERED_SG, REFLEXIVE_VERBS)]

    # Reflexive number: "The boys hurt themselves." / "The boys hurt himself.", and the reverse.
    rows = []
    for i, (pl, v) in enumerate(itertools.product(PLURAL_PEOPLE, REFLEXIVE_VERBS)):
        wrong = "himself" if i % 2 == 0 else "herself"
        rows.append((f"The {pl} {v} themselves.", f"The {pl} {v} {wrong}."))
    for (n, refl), v in itertools.product(GENDERED_SG, REFLEXIVE_VERBS):
        rows.append((f"The {n} {v} {refl}.", f"The {n} {v} themselves."))
    c["anaphor_number_agreement"] = rows

    # Existential "there is/are", "there was/were".
    rows = []
    for (s, p, loc), q in itertools.product(THERE_NOUNS, QUANTIFIERS):
        rows.append((f"There is {article(s)} {s} {loc}.", f"There are {article(s)} {s} {loc}."))
        rows.append((f"There are {q} {p} {loc}.", f"There is {q} {p} {loc}."))
        rows.append((f"There was {article(s)} {s} {loc}.", f"There were {article(s)} {s} {loc}."))
        rows.append((f"There were {q} {p} {loc}.", f"There was {q} {p} {loc}."))
    c["existential_there"] = rows
    return c


def make_minimal_pairs(rng: random.Random, per_phenomenon: int) -> list[dict]:
    items = []
    for phenomenon, rows in phenomenon_candidates().items():
        rows = sorted(set(rows))
        assert all(g != b and len(g.split()) == len(b.split()) for g, b in rows), phenomenon
        if len(rows) < per_phenomenon:
            raise SystemExit(f"{phenomenon}: only {len(rows)} candidate pairs")
        for good, bad in rng.sample(rows, per_phenomenon):
            items.append({"good": good, "bad": bad, "phenomenon": phenomenon})
    rng.shuffle(items)
    return items


# ----------------------------------------------------------------------------------------------
# Retrieval
# ----------------------------------------------------------------------------------------------

KV_ADJECTIVES = ["red", "blue", "green", "yellow", "silver", "golden", "wooden", "old", "small",
                 "large", "black", "white"]
KV_NOUNS = ["box", "door", "lamp", "book", "garden", "ship", "tower", "bridge", "clock", "river",
            "mountain", "window"]
KV_WORDS = ["falcon", "copper", "meadow", "lantern", "harbor", "violet", "thunder", "marble",
            "pepper", "canyon", "orchid", "walnut", "glacier", "saddle", "comet", "ginger",
            "velvet", "anchor", "maple", "rocket", "island", "banjo", "cactus", "dolphin"]
N_DISTRACTORS = 6
PASSKEY_EVERY = 3  # one item in three is a pass key (saturates on SmolLM2), the rest key-value


def load_paragraphs(path: Path) -> list[str]:
    paras = []
    for line in path.read_text().splitlines():
        for p in json.loads(line)["text"].split("\n\n"):
            p = p.strip()
            if p:
                paras.append(p)
    return paras


def make_retrieval(rng: random.Random, tokenizer, n_items: int, min_tokens: int,
                   max_tokens: int, n_distractors: int = N_DISTRACTORS,
                   shared_keys: bool = False) -> list[dict]:
    paras = load_paragraphs(CORPUS_LONG)
    n_tok = lambda s: len(tokenizer(s, add_special_tokens=False)["input_ids"])  # noqa: E731
    para_tokens = [n_tok(p) for p in paras]

    # Context lengths stratified over [min_tokens, max_tokens]; depths cycle 0.1 ... 0.9.
    targets = [min_tokens + (max_tokens - min_tokens) * (i + rng.random()) / n_items
               for i in range(n_items)]
    rng.shuffle(targets)
    depths = [0.1 + 0.1 * (i % 9) for i in range(n_items)]
    rng.shuffle(depths)

    items = []
    for i in range(n_items):
        kind = "passkey" if i % PASSKEY_EVERY == 0 else "kv"
        if kind == "passkey":
            answer = str(rng.randint(10000, 99999))
            needle = f"The pass key is {answer}. Remember it. {answer} is the pass key."
            question = "What is the pass key?"
            prefix = "The pass key is"
            distractors = []
        else:
            adj, noun = rng.choice(KV_ADJECTIVES), rng.choice(KV_NOUNS)
            if shared_keys:
                # Distractor keys share the adjective or the noun of the asked-for key.
                keys = [(adj, noun)]
                keys += [(adj, n) for n in rng.sample([n for n in KV_NOUNS if n != noun],
                                                      (n_distractors + 1) // 2)]
                keys += [(a, noun) for a in rng.sample([a for a in KV_ADJECTIVES if a != adj],
                                                       n_distractors // 2)]
            else:
                # Distractor keys share neither the adjective nor the noun.
                keys = [(adj, noun)] + list(zip(
                    rng.sample([a for a in KV_ADJECTIVES if a != adj], n_distractors),
                    rng.sample([n for n in KV_NOUNS if n != noun], n_distractors)))
            values = []
            for _ in keys:
                while True:
                    v = rng.choice(KV_WORDS) if rng.random() < 0.5 else str(rng.randint(1000, 9999))
                    if v not in values:
                        values.append(v)
                        break
            answer = values[0]
            needle = f"The secret code for the {adj} {noun} is {answer}."
            question = f"What is the secret code for the {adj} {noun}?"
            prefix = f"The secret code for the {adj} {noun} is"
            distractors = [f"The secret code for the {a} {n} is {v}."
                           for (a, n), v in zip(keys[1:], values[1:])]
        inserts = [needle] + distractors
        insert_tokens = sum(n_tok(s) for s in inserts) + 2 * len(inserts)

        # Contiguous paragraphs from a random start (wrapping), up to the target length;
        # the answer must not occur in the filler.
        while True:
            start = rng.randrange(len(paras))
            chosen, total = [], insert_tokens
            j = start
            while True:
                t = para_tokens[j % len(paras)] + 2
                if total + t > targets[i] and total >= min_tokens:
                    break
                if total + t > max_tokens:
                    break
                chosen.append(paras[j % len(paras)])
                total += t
                j += 1
            if len(chosen) >= 6 and total >= min_tokens and answer not in " ".join(chosen):
                break

        # Distractors at random paragraph boundaries (several may share one), then the needle
        # at the boundary nearest to the target depth, never at either end of the context.
        pieces = list(chosen)
        for text in distractors:
            pieces.insert(rng.randrange(len(pieces) + 1), text)
        n_total = n_tok("\n\n".join(pieces + [needle]))
        depth_at = {k: n_tok("\n\n".join(pieces[:k])) / n_total for k in range(1, len(pieces))}
        inside = [k for k, d in depth_at.items() if 0.1 <= d <= 0.9] or list(depth_at)
        slot = min(inside, key=lambda k: abs(depth_at[k] - depths[i]))
        pieces.insert(slot, needle)
        context = "\n\n".join(pieces)
        before = "\n\n".join(pieces[:pieces.index(needle)])
        n_tokens = n_tok(context)
        items.append({
            "context": context,
            "question": question,
            "answer": answer,
            "answer_prefix": prefix,
            "kind": kind,
            "n_tokens": n_tokens,
            "depth": round(n_tok(before) / n_tokens, 3),
        })
    return items


def rel(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", default=None,
                    help="tokenizer folder used to measure the retrieval contexts (default: the bundled SmolLM2-135M)")
    ap.add_argument("--pairs-per-phenomenon", type=int, default=PAIRS_PER_PHENOMENON)
    ap.add_argument("--retrieval-items", type=int, default=100)
    ap.add_argument("--kv-distractors", type=int, default=N_DISTRACTORS)
    ap.add_argument("--kv-shared-keys", action="store_true",
                    help="distractor keys share the adjective or noun of the asked-for key")
    ap.add_argument("--out-dir", default=str(OUT), help="where to write (default eval/data)")
    ap.add_argument("--min-tokens", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=2048)
    args = ap.parse_args()

    from transformers import AutoTokenizer

    if args.tokenizer is None:
        from compressor.models.builtin import materialize_builtin

        args.tokenizer = materialize_builtin("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)

    rng = random.Random(args.seed)
    pairs = make_minimal_pairs(rng, args.pairs_per_phenomenon)
    out = Path(args.out_dir).resolve()
    path = out / "minimal_pairs.jsonl"
    write_jsonl(path, pairs)
    counts = Counter(p["phenomenon"] for p in pairs)
    print(f"wrote {rel(path)}: {len(pairs)} pairs, "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

    rng = random.Random(args.seed + 1)
    items = make_retrieval(rng, tokenizer, args.retrieval_items, args.min_tokens,
                           args.max_tokens, args.kv_distractors, args.kv_shared_keys)
    path = out / "retrieval.jsonl"
    write_jsonl(path, items)
    kinds = Counter(it["kind"] for it in items)
    toks = sorted(it["n_tokens"] for it in items)
    print(f"wrote {rel(path)}: {len(items)} items "
          f"({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}), context tokens "
          f"min {toks[0]} median {toks[len(toks) // 2]} max {toks[-1]}, depths "
          f"{min(it['depth'] for it in items):.2f}-{max(it['depth'] for it in items):.2f}")


if __name__ == "__main__":
    main()
