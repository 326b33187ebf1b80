#!/usr/bin/env python3
"""Build eval/data/corpus/ from the docstrings of the running interpreter's CPython standard library.

The text is real English prose the project did not write: module, class and function docstrings,
read from the stdlib's .py sources with `ast` (no module is imported). Deterministic for a given
Python version: files are read in sorted order and modules are shuffled with a fixed seed.

    python scripts/make_corpus.py            # writes eval/data/corpus/{calibration,eval,long}.jsonl

Splits are disjoint by *module*: no module contributes text to more than one split, so the
calibration text never shares a source file with the perplexity text.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import shutil
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "eval" / "data" / "corpus"

SKIP_DIRS = {"test", "tests", "idlelib", "tkinter", "lib2to3", "site-packages", "dist-packages",
             "ensurepip", "turtledemo", "__pycache__", "pydoc_data"}
SEED = 0
MIN_DOCSTRING = 200
DOC_MIN, DOC_MAX = 1000, 2000
LONG_MIN, LONG_MAX = 20_000, 40_000
N_LONG, N_EVAL, N_CALIBRATION = 10, 150, 200


def stdlib_files(stdlib: Path) -> list[Path]:
    files = []
    for path in stdlib.rglob("*.py"):
        rel = path.relative_to(stdlib)
        if any(part in SKIP_DIRS or part.startswith("config-") for part in rel.parts[:-1]):
            continue
        if rel.name.startswith("_sysconfigdata"):
            continue
        files.append(path)
    return sorted(files, key=lambda p: p.relative_to(stdlib).as_posix())


def is_prose(text: str) -> bool:
    """Long enough, mostly letters, not a doctest session."""
    if len(text) < MIN_DOCSTRING:
        return False
    visible = [c for c in text if not c.isspace()]
    if not visible or sum(c.isalpha() for c in visible) / len(visible) < 0.75:
        return False
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    prompts = sum(line.startswith((">>>", "...")) for line in lines)
    return prompts <= 2 and prompts / len(lines) < 0.1


def docstrings(tree: ast.Module) -> list[str]:
    """Module, class and function docstrings in source order."""
    found = []

    def visit(node):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                found.append(doc.strip())
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def pieces(doc: str, limit: int = DOC_MAX) -> list[str]:
    """Split a docstring longer than `limit` at paragraph (then word) boundaries."""
    if len(doc) <= limit:
        return [doc]
    out, cur = [], ""
    for para in doc.split("\n\n"):
        while len(para) > limit:
            cut = para.rfind(" ", 0, limit)
            cut = cut if cut > 0 else limit
            if cur:
                out.append(cur)
                cur = ""
            out.append(para[:cut].rstrip())
            para = para[cut:].lstrip()
        if cur and len(cur) + 2 + len(para) > limit:
            out.append(cur)
            cur = ""
        cur = f"{cur}\n\n{para}" if cur else para
    if cur:
        out.append(cur)
    return out


def group(texts: list[str]) -> list[str]:
    """Consecutive docstrings of one module joined by blank lines into ~DOC_MIN..DOC_MAX documents.

    A document still short of DOC_MIN whose next docstring would overflow DOC_MAX takes the head of
    that docstring (cut at a paragraph or word boundary) and the rest starts the next document.
    A module's remainder under DOC_MIN joins its previous document if that stays near DOC_MAX,
    else it is dropped.
    """
    docs, cur = [], ""
    work = [piece for text in texts for piece in pieces(text)]
    while work:
        piece = work.pop(0)
        if cur and len(cur) + 2 + len(piece) > DOC_MAX:
            room = DOC_MAX - len(cur) - 2
            if len(cur) < DOC_MIN and room >= 200:
                head, *rest = pieces(piece, room)
                cur = f"{cur}\n\n{head}"
                work[0:0] = pieces("\n\n".join(rest)) if rest else []
                piece = ""
            docs.append(cur)
            cur = ""
        if piece:
            cur = f"{cur}\n\n{piece}" if cur else piece
    if len(cur) >= DOC_MIN:
        docs.append(cur)
    elif cur and docs and len(docs[-1]) + 2 + len(cur) <= DOC_MAX + DOC_MIN // 4:
        docs[-1] = f"{docs[-1]}\n\n{cur}"
    return docs


def long_document(texts: list[str]) -> str:
    """All of a module's docstrings joined, cut at a docstring boundary once past LONG_MIN (<= LONG_MAX)."""
    out = ""
    for text in texts:
        if len(out) >= LONG_MIN and len(out) + 2 + len(text) > LONG_MAX:
            break
        out = f"{out}\n\n{text}" if out else text
    return out


def collect(stdlib: Path) -> dict[str, list[str]]:
    modules = {}
    for path in stdlib_files(stdlib):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        kept = [d for d in docstrings(tree) if is_prose(d)]
        if kept:
            modules["Lib/" + path.relative_to(stdlib).as_posix()] = kept
    return modules


def unit_of(name: str) -> str:
    """Top-level package directory (`Lib/email/`) or top-level module (`Lib/typing.py`)."""
    parts = name.split("/")
    return "/".join(parts[:2]) + "/" if len(parts) > 2 else name


def build(stdlib: Path) -> dict[str, list[dict]]:
    modules = collect(stdlib)
    names = sorted(modules)
    random.Random(SEED).shuffle(names)

    splits: dict[str, list[dict]] = {"long": [], "eval": [], "calibration": []}
    used = set()

    def take_long(members: list[str]) -> None:
        texts, sources = [], []
        for name in members:
            if sum(len(t) + 2 for t in texts) >= LONG_MIN:
                break
            texts += modules[name]
            sources.append(name)
        text = long_document(texts)
        if len(text) >= LONG_MIN:
            splits["long"].append({"text": text, "source": ", ".join(sources)})
            used.update(sources)

    # Long documents: one package (its modules in sorted order) or one module with enough prose,
    # units taken in the shuffled order; if fewer than N_LONG exist, the rest join top-level modules.
    units: dict[str, list[str]] = {}
    for name in names:
        units.setdefault(unit_of(name), []).append(name)
    for unit, members in units.items():
        if len(splits["long"]) < N_LONG:
            take_long(sorted(members))
    while len(splits["long"]) < N_LONG:
        before = len(splits["long"])
        take_long([n for n in names if n not in used and n.count("/") == 1])
        if len(splits["long"]) == before:
            sys.exit(f"only {before} long documents of {LONG_MIN} characters")

    targets = [("eval", N_EVAL), ("calibration", N_CALIBRATION)]
    for name in names:
        if name in used or not targets:
            continue
        split, want = targets[0]
        for text in group(modules[name]):
            if len(splits[split]) < want:
                splits[split].append({"text": text, "source": name})
        used.add(name)
        if len(splits[split]) >= want:
            targets.pop(0)
    for split, want in (("eval", N_EVAL), ("calibration", N_CALIBRATION)):
        if len(splits[split]) < want:
            sys.exit(f"split {split}: only {len(splits[split])} documents")
    return splits


README = """# Real-text corpus: CPython standard-library docstrings

Text the project did not write, used for perplexity (`eval`), calibration and importance ranking
(`calibration`) and long-context tests (`long`). Each line of a `.jsonl` file is
`{{"text": ..., "source": "Lib/<module>.py"}}`.

- Source: module, class and function docstrings of the CPython {version} standard library
  (`{stdlib}`), read with `ast` from the `.py` files (nothing imported). Skipped: `test/`, `tests/`,
  `idlelib/`, `tkinter/`, `lib2to3/`, `ensurepip/`, `turtledemo/`, `pydoc_data/`, `site-packages/`.
- Kept: docstrings of at least {min_doc} characters, at least 75 % letters among visible
  characters, with at most two `>>>`/`...` doctest lines.
- `eval.jsonl`: {n_eval} documents, {c_eval:,} characters; `calibration.jsonl`: {n_cal} documents,
  {c_cal:,} characters — consecutive docstrings of one module joined with blank lines into
  documents of about {doc_min:,}–{doc_max:,} characters.
- `long.jsonl`: {n_long} documents of {long_min:,}–{long_max:,} characters ({c_long:,} in all): the
  prose docstrings, in source order, of one module or of the sorted modules of one package until
  past {long_min:,} characters; when fewer than {n_long} packages/modules are that long, the rest are
  built from several whole top-level modules. `source` lists the modules, comma-separated.
- The splits are disjoint by module (no source file feeds two splits); modules are assigned in a
  seeded shuffle (seed {seed}) of the sorted module list.

Regenerate (the output depends only on the Python version's stdlib sources):

    python scripts/make_corpus.py

## Licence

CPython is distributed under the PSF License Agreement; these docstrings are part of its
documentation and source. The licence text, copied from the interpreter install, is in `LICENSE`.
"""

PSF_NOTICE = """PSF LICENSE AGREEMENT FOR PYTHON

Copyright (c) 2001 Python Software Foundation; All Rights Reserved.

The text in this folder is taken from the Python standard library and is distributed under the
Python Software Foundation License Version 2. See https://docs.python.org/3/license.html for the
full terms.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    splits = build(stdlib)
    args.out.mkdir(parents=True, exist_ok=True)
    for split, docs in splits.items():
        with open(args.out / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for doc in docs:
                f.write(json.dumps(doc, ensure_ascii=False) + "\n")

    version = ".".join(map(str, sys.version_info[:3]))
    licence = Path(sys.base_prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "LICENSE.txt"
    if not licence.is_file():
        licence = stdlib / "LICENSE.txt"
    if licence.is_file():
        shutil.copyfile(licence, args.out / "LICENSE")
    else:
        (args.out / "LICENSE").write_text(PSF_NOTICE, encoding="utf-8")

    def chars(split):
        return sum(len(d["text"]) for d in splits[split])

    (args.out / "README.md").write_text(README.format(
        version=version, stdlib=f"lib/python{sys.version_info[0]}.{sys.version_info[1]}",
        min_doc=MIN_DOCSTRING, doc_min=DOC_MIN, doc_max=DOC_MAX, long_min=LONG_MIN, long_max=LONG_MAX,
        seed=SEED, n_eval=len(splits["eval"]), c_eval=chars("eval"), n_cal=len(splits["calibration"]),
        c_cal=chars("calibration"), c_long=chars("long"), n_long=len(splits["long"])), encoding="utf-8")
    for split, docs in splits.items():
        lengths = sorted(len(d["text"]) for d in docs)
        print(f"{split}: {len(docs)} docs, {sum(lengths):,} chars (min {lengths[0]:,}, max {lengths[-1]:,}), "
              f"{len({m for d in docs for m in d['source'].split(', ')})} modules")


if __name__ == "__main__":
    main()
