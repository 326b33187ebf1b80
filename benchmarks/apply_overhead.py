"""`compressor apply` (cast to fp16, no eval) vs a plain transformers load + cast + save, one run.

    .venv/bin/python benchmarks/apply_overhead.py [--model builtin:smollm2-135m] [--repeats 3]

Prints each side's wall time (min / median) and the ratio apply / plain. Both run in fresh
processes so import and load costs are counted the same way.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLAIN = """
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype="auto").to(torch.float16)
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
model.save_pretrained(sys.argv[2], safe_serialization=True, max_shard_size="10GB")
tokenizer.save_pretrained(sys.argv[2])
"""


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:smollm2-135m")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from compressor.models.sources import resolve_source

    source = resolve_source(args.model)  # materialise once, outside the timing
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp) / "fp16.yaml"
        recipe.write_text(f"name: fp16\nmodel: {source.path}\nstages:\n  - stage: cast\n    dtype: float16\n"
                          "eval: {enabled: false}\n")
        apply_cmd = [sys.executable, "-m", "compressor.cli", "apply", str(recipe), "--out", f"{tmp}/apply", "--force"]
        plain_cmd = [sys.executable, "-c", PLAIN, str(source.path), f"{tmp}/plain"]
        apply_s, plain_s = [], []
        for _ in range(args.repeats):  # interleaved so drift hits both sides alike
            apply_s.append(timed(apply_cmd))
            plain_s.append(timed(plain_cmd))
    print(f"model: {args.model} ({source.path})")
    print(f"{'side':28} {'min s':>8} {'median s':>9}")
    for name, values in (("compressor apply (no eval)", apply_s), ("transformers load+cast+save", plain_s)):
        print(f"{name:28} {min(values):8.2f} {statistics.median(values):9.2f}")
    print(f"ratio apply / plain (median): {statistics.median(apply_s) / statistics.median(plain_s):.2f}")


if __name__ == "__main__":
    main()
