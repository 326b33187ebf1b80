"""The reliability table of the hostile-input issue, for the code as it is now (not a test; prints markdown).

    .venv/bin/python benchmarks/reliability.py [--recipes 5000] [--applies 32] [--kills 2] [--work /tmp/rel]
                                               [--ehpc out/ehpc]

Per area: tried, clean one-line errors, tracebacks (anything but `error: ...` in one line), silent wrong results
(exit 0 with an output that contradicts its report, or a refusal that should have been one), left behind
(staging folders, lock files), leaks (bytes from outside model/ in submit.zip). Generated recipes come from
tests/hostile.py (the fuzz test's strategy: the recipe schema with hostile values and raw bytes), validated
in-process; a sample of those that validate is applied to a tiny model. Prompt compression reports the peak RSS
of its largest accepted prompt (the bundled model's 8,192 positions) in a fresh process.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
CLI = [sys.executable, "-m", "compressor.cli"]


def run(args, cwd=None, timeout=600, env=None) -> tuple[int, str, float]:
    started = time.perf_counter()
    try:
        done = subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                              cwd=cwd, env={**os.environ, **(env or {})})
        return done.returncode, done.stderr, time.perf_counter() - started
    except subprocess.TimeoutExpired:
        return -9, "HANG", time.perf_counter() - started


def classify(code: int, err: str) -> str:
    if err == "HANG":
        return "hang"
    if code == 0:
        return "ok"
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("•")]
    if code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "internal error" not in lines[0]:
        return "clean"
    return "traceback"


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in Path(folder).rglob(".*") if ".tmp-" in p.name or ".old-" in p.name
            or p.name.endswith(".lock")] if Path(folder).exists() else []


def generated_recipes(count: int, work: Path, tiny: Path) -> dict:
    """`count` hostile recipes through `recipes validate` and the validation half of apply, in-process."""
    from hypothesis import HealthCheck, given, settings
    from transformers import AutoConfig

    from compressor.core.errors import UserError
    from compressor.recipe import check_against_config, load_recipe, recipe_model
    from hostile import hostile_yaml

    config = AutoConfig.from_pretrained(tiny)
    tally, slow, valid = Counter(), [], []

    @settings(max_examples=count, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(raw=hostile_yaml(recipe_model().model_json_schema(by_alias=True)))
    def probe(raw):
        path = work / f"fuzz-{sum(tally.values())}.yaml"
        path.write_bytes(raw)
        started = time.perf_counter()
        try:
            recipe = load_recipe(path)
            recipe.model.id = str(tiny)
            check_against_config(recipe, config, str(path), tiny)
            tally["ok"] += 1
            valid.append(path)
        except UserError as error:
            tally["clean" if "\n" not in str(error) else "traceback"] += 1
        except Exception:  # noqa: BLE001 (this is what we count)
            tally["traceback"] += 1
        took = time.perf_counter() - started
        if took > 5:
            slow.append(round(took, 1))

    probe()
    return {"tally": tally, "slow": slow, "valid": valid}


def apply_sample(paths: list[Path], tiny: Path, work: Path) -> Counter:
    tally = Counter()
    for index, path in enumerate(paths):
        out = work / f"applied-{index}"
        code, err, _ = run(["apply", path, "--model", tiny, "--out", out, "--no-eval"], timeout=300)
        kind = classify(code, err)
        if kind == "ok":
            report = json.loads((out / "report.json").read_text())
            written = json.loads((out / "model" / "config.json").read_text())["num_hidden_layers"]
            kind = "ok" if report["model"]["num_hidden_layers"] == written else "silent wrong"
        tally[kind] += 1
        tally["left behind"] += len(leftovers(work))
        shutil.rmtree(out, ignore_errors=True)
    return tally


def bad_folders(tiny: Path, work: Path) -> Counter:
    damages = {
        "invalid json": lambda m: (m / "config.json").write_text("{x"),
        "list json": lambda m: (m / "config.json").write_text("[]"),
        "empty json": lambda m: (m / "config.json").write_text(""),
        "negative layers": lambda m: _edit(m, num_hidden_layers=-1),
        "zero heads": lambda m: _edit(m, num_attention_heads=0),
        "indivisible heads": lambda m: _edit(m, num_attention_heads=3),
        "more layers than weights": lambda m: _edit(m, num_hidden_layers=9),
        "unknown type with auto_map": lambda m: _edit(m, model_type="x", auto_map={"AutoConfig": "a.B"}),
        "truncated weights": lambda m: (m / "model.safetensors").write_bytes(
            (m / "model.safetensors").read_bytes()[:-64]),
        "empty weights": lambda m: (m / "model.safetensors").write_bytes(b""),
        "no weights": lambda m: (m / "model.safetensors").unlink(),
        "no config": lambda m: (m / "config.json").unlink(),
        "string sizes": lambda m: _edit(m, hidden_size="64"),
        "bool sizes": lambda m: _edit(m, vocab_size=True),
        "huge sizes": lambda m: _edit(m, intermediate_size=2**40),
    }
    tally = Counter()
    for name, damage in damages.items():
        model = Path(shutil.copytree(tiny, work / f"bad-{name.replace(' ', '-')}"))
        damage(model)
        for args in (["apply", "fp16", "--model", model, "--out", work / "o", "--no-eval"],
                     ["eval", model, "--no-baseline"], ["bench", model]):
            kind = classify(*run(args)[:2])
            tally["silent wrong" if kind == "ok" else kind] += 1
        tally["left behind"] += len(leftovers(work))
        shutil.rmtree(work / "o", ignore_errors=True)
    return tally


def _edit(model: Path, **values) -> None:
    config = json.loads((model / "config.json").read_text())
    config.update(values)
    (model / "config.json").write_text(json.dumps(config))


def kills(tiny: Path, work: Path, repeats: int) -> Counter:
    tally = Counter()
    for repeat in range(repeats):
        for delay in (0.5, 1.5, 3.0, 5.0, 8.0):
            out = work / "kill" / "out"
            shutil.rmtree(out.parent, ignore_errors=True)
            process = subprocess.Popen(CLI + ["apply", "fp16", "--model", str(tiny), "--out", str(out), "--suite",
                                              "quick", "--limit", "2"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            time.sleep(delay)
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            complete = (out / "model" / "model.safetensors").is_file() and (out / "report.json").is_file()
            tally["complete output" if complete else "no output" if not out.exists() else "corrupt"] += 1
            run(["apply", "fp16", "--model", tiny, "--out", out, "--no-eval", "--force"])
            tally["left behind"] += len(leftovers(out.parent))
    return tally


def concurrent(tiny: Path, work: Path) -> Counter:
    """A second apply to the --out a first one is writing: without --force it finds the output (the first writes
    the model before its evaluation) or the lock; with --force the lock must refuse it. The first must finish."""
    out = work / "twice"
    shutil.rmtree(out, ignore_errors=True)
    # the first run must outlive the others' start-up (~5 s of imports): a longer timing run keeps it busy
    first = subprocess.Popen(CLI + ["apply", "fp16", "--model", str(tiny), "--out", str(out), "--suite", "quick",
                                    "--limit", "2", "--set", "eval.latency.runs=100"], stderr=subprocess.PIPE,
                             text=True)
    lock = out.parent / f".{out.name}.lock"
    deadline = time.monotonic() + 120
    while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    tally = Counter()
    busy = "another compressor run"
    for extra, expected in (([], (busy, "already exists")), (["--force"], (busy,))):
        code, err, _ = run(["apply", "fp16", "--model", tiny, "--out", out, "--no-eval", *extra])
        refused = classify(code, err) == "clean" and any(reason in err for reason in expected)
        tally["refused cleanly" if refused else "silent wrong" if code == 0 else classify(code, err)] += 1
    running = first.poll() is None
    first.wait()
    report = out / "report.json"
    tally["first finished"] = int(first.returncode == 0 and report.is_file() and running)
    tally["left behind"] += len(leftovers(work))
    return tally


def packaging(tiny: Path, work: Path) -> Counter:
    import zipfile

    out = work / "pkg"
    shutil.rmtree(out, ignore_errors=True)
    run(["apply", "fp16", "--model", tiny, "--out", out, "--no-eval"])
    secret = work / "secret.txt"
    secret.write_text("SECRET-OUTSIDE")
    (out / "model" / "notes.txt").symlink_to(secret)
    (out / "model" / "run.sh").write_text("echo hi")
    (out / "model" / os.fsdecode(b"bad\xff.json")).write_text("{}")
    tally = Counter()
    code, err, _ = run(["package", out, "--target", "hf"])
    tally[classify(code, err)] += 1
    with zipfile.ZipFile(out / "submit.zip") as zf:
        tally["leaks"] += sum(b"SECRET-OUTSIDE" in zf.read(n) for n in zf.namelist())
        tally["junk shipped"] += sum(n.endswith(("run.sh", "notes.txt")) for n in zf.namelist())
    (out / "submit.zip").unlink()
    (out / "submit.zip").mkdir()
    tally[classify(*run(["package", out, "--target", "hf", "--force"])[:2])] += 1
    tally["left behind"] += len(leftovers(out))
    return tally


def prompt_compress(work: Path, ehpc: Path | None = None) -> dict:
    """Hostile prompts on the bundled model's EHPC output (`ehpc`, else applied here); peak RSS of the largest
    accepted one."""
    ehpc = ehpc or work / "ehpc"
    if not (ehpc / "model" / "prompt_compressor.json").is_file():
        run(["apply", "ehpc", "--out", ehpc, "--no-eval", "--force"], timeout=3600)
    tally = Counter()
    cases = {"57k tokens": "word " * 57000, "20k-char question": None, "not utf-8": b"\xff\xfe\xfa",
             "empty": "", "korean 11k tokens": "대한민국 헌법 " * 2500}
    for name, text in cases.items():
        path = work / f"prompt-{name.replace(' ', '-')}.txt"
        path.write_bytes(text if isinstance(text, bytes) else (text or "short prompt").encode())
        args = ["prompt", "compress", ehpc, path] + (["--question", "q" * 20000] if text is None else [])
        kind = classify(*run(args, timeout=900)[:2])
        tally[kind] += 1
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(ehpc / "model" / "tokenizer.json"))
    words = "The quick brown fox jumps over the lazy dog. "
    positions = json.loads((ehpc / "model" / "config.json").read_text())["max_position_embeddings"]
    low, high = 1, positions  # the most repeats that still fit the scorer's positions
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if len(tokenizer.encode(words * middle).ids) <= positions else (low, middle - 1)
    text = words * low
    path = work / "prompt-largest.txt"
    path.write_text(text)
    measure = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", measure, *CLI, "prompt", "compress", str(ehpc), str(path),
                           "--rate", "0.25"], capture_output=True, text=True)
    return {"tally": tally, "largest_tokens": len(tokenizer.encode(text).ids),
            "peak_rss_mb": round(int(done.stdout.strip().splitlines()[-1]) / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", type=int, default=5000)
    parser.add_argument("--applies", type=int, default=32)
    parser.add_argument("--kills", type=int, default=2, help="rounds of 5 kills at increasing delays")
    parser.add_argument("--work", type=Path, default=Path("/tmp/reliability"))
    parser.add_argument("--ehpc", type=Path, default=None,
                        help="an `apply ehpc` output of the bundled model to reuse (default: applied in WORK)")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    from compressor.models.tiny import save_tiny

    tiny = save_tiny("llama", args.work / "tiny")
    rows = {}
    generated = generated_recipes(args.recipes, args.work, tiny)
    rows["generated recipes -> validate + apply's checks"] = generated["tally"]
    rows["recipes that validate -> apply (tiny model)"] = apply_sample(generated["valid"][: args.applies], tiny,
                                                                       args.work)
    rows["bad model folders -> apply / eval / bench"] = bad_folders(tiny, args.work)
    rows["kill -9 during apply (then a re-run)"] = kills(tiny, args.work, args.kills)
    rows["two applies to one --out"] = concurrent(tiny, args.work)
    rows["package (links, junk, odd names, a folder at submit.zip)"] = packaging(tiny, args.work)
    prompts = prompt_compress(args.work, args.ehpc)
    rows["prompt compress (hostile prompts, bundled model)"] = prompts["tally"]
    print("| area | tried | clean one-line error | accepted | traceback / hang | silent wrong | left behind | other |")
    print("|---|---|---|---|---|---|---|---|")
    for area, tally in rows.items():
        tried = sum(v for k, v in tally.items() if k in ("ok", "clean", "traceback", "hang", "silent wrong"))
        other = {k: v for k, v in tally.items() if k not in ("ok", "clean", "traceback", "hang", "silent wrong",
                                                              "left behind")}
        print(f"| {area} | {tried or sum(other.values())} | {tally['clean']} | {tally['ok']} | "
              f"{tally['traceback'] + tally['hang']} | {tally['silent wrong']} | {tally['left behind']} | "
              f"{', '.join(f'{k}: {v}' for k, v in other.items()) or '-'} |")
    print(f"\nslowest generated recipes (> 5 s): {generated['slow'] or 'none'}; largest accepted prompt "
          f"{prompts['largest_tokens']} tokens: peak RSS {prompts['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
