"""`compressor plan`'s predicted peak memory against the measured one, recipe by recipe, on the bundled model.

    .venv/bin/python benchmarks/plan.py [--work /tmp/bench-plan] [--recipes fp16,w8a8,...] [--eval fp16]

Each recipe runs as its own `compressor apply ... --no-eval` process (the gallery recipe, heal shortened to
20 steps: its memory does not depend on the step count); its peak resident set is the kernel's (wait4's
ru_maxrss). The plan comes from `compressor plan --json` for the same recipe and settings. `--eval` names
recipes also run with their evaluation (the source measured fresh, into an empty baseline cache). Goal:
every prediction within 20 % of the measurement. Also prints the plans of the public configs (EXAONE-4.0
1.2B / 32B, Llama-3.1 8B / 70B) for a 24 GB and an 80 GB GPU.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "tests" / "data" / "configs"
SHORT_HEAL = {"minitron": ["--set", "stages[1].steps=20"], "drop-heal-lora": ["--set", "stages[1].steps=20"]}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "compressor.cli", *args]


def measured(args: list[str], env: dict) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of one command."""
    started = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{child.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - started


def planned(args: list[str], env: dict) -> dict:
    return json.loads(subprocess.run(args, capture_output=True, text=True, check=True, env=env).stdout)


def public_plans() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("exaone-4.0-1.2b", "exaone-4.0-32b", "llama-3.1-8b", "llama-3.1-70b"):
            folder = Path(tmp) / name
            folder.mkdir()
            data = {k: v for k, v in json.loads((CONFIGS / f"{name}.json").read_text()).items() if k[0] != "_"}
            (folder / "config.json").write_text(json.dumps(data))
            for recipe, extra in (("w8a8", []), ("minitron", []), ("minitron", ["--set", "stages[1].method=lora"])):
                for memory in ("24GB", "80GB"):
                    plan = planned(cli("plan", recipe, "--model", str(folder), "--device", "cuda", "--memory", memory,
                                       "--set", "eval.runtime=vllm", "--json", *extra), dict(os.environ))
                    rows.append({"model": name, "recipe": recipe + (" (lora heal)" if extra else ""),
                                 "gpu": memory, "peak_gb": round(plan["peak"] / 1e9, 1), "at": plan["peak_step"],
                                 "fits": plan["fits"], "kv_tokens": (plan["vllm"] or {}).get("kv_tokens")})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench-plan")
    parser.add_argument("--recipes", default="fp16,w8a8,w8a8-gptq,drop-layers,prune-mlp,minitron,drop-heal-lora")
    parser.add_argument("--eval", default="fp16", help="recipes also measured with their evaluation ('' for none)")
    parser.add_argument("--offload", type=int, default=155_700_000, metavar="BYTES",
                        help="also drop-w8a8 offloaded: model.max_memory.cpu BYTES, the rest of the layers on disk "
                             "(155.7 MB: 2 of SmolLM2's 30 layers beside the embeddings; 0: not)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COMPRESSOR_BASELINES": str(args.work / "baselines")}
    offloaded = ["--set", f"model={{id: 'builtin:smollm2-135m', device_map: auto, max_memory: {{cpu: {args.offload}}}}}"]
    runs = [(name, True, []) for name in args.recipes.split(",")] + \
           [(name, False, []) for name in args.eval.split(",") if name] + \
           ([("drop-w8a8", True, offloaded)] if args.offload else [])
    rows = []
    for name, no_eval, model in runs:
        extra = SHORT_HEAL.get(name, []) + (["--no-eval"] if no_eval else []) + model
        plan = planned(cli("plan", name, "--json", *extra), env)
        out = args.work / (name + ("-offloaded" if model else ""))
        peak, seconds = measured(cli("apply", name, "--out", str(out), "--force", *extra), env)
        predicted = plan["peak"] / 2**20
        rows.append({"recipe": name + (" (offloaded)" if model else ""), "eval": not no_eval, "predicted_mib": round(predicted), "peak_step":
                     plan["peak_step"], "measured_mib": round(peak), "error": round(predicted / peak - 1, 3),
                     "seconds": round(seconds, 1)})
        row = rows[-1]
        print(f"{row['recipe']:22} eval={str(row['eval']):5} predicted {row['predicted_mib']:6} MiB ({row['peak_step']}) "
              f"measured {row['measured_mib']:6} MiB  error {row['error']:+.1%}  {row['seconds']} s", flush=True)
    worst = max(abs(row["error"]) for row in rows)
    print(f"worst error {worst:.1%} (goal <= 20 %)")
    public = public_plans()
    for row in public:
        print(f"{row['model']:16} {row['recipe']:22} {row['gpu']:5} peak {row['peak_gb']:7} GB at {row['at']:22} "
              f"fits {row['fits']}  vLLM KV tokens {row['kv_tokens']}")
    (args.work / "plan-bench.json").write_text(json.dumps({"runs": rows, "worst_error": worst, "public": public},
                                                          indent=2))


if __name__ == "__main__":
    main()
