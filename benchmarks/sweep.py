"""A sweep on the bundled model, `--executor local` against `--executor ray` (2 workers on the 2 cores), one run.

    .venv/bin/python benchmarks/sweep.py [--sweep sweeps/drop-w8a8.yaml] [--work /tmp/bench-sweep]
    .venv/bin/python benchmarks/sweep.py --render /tmp/bench-sweep/sweep-bench.json     # the table again

Runs the same sweep file three times, as separate `compressor sweep` processes: local (trials one after another),
Ray (2 trials at a time), then local again into the first folder (the resume: every trial already complete).
Each of the first two gets its own empty baseline cache, so both measure the source once. Reports each run's
wall time and the peak memory of its whole process tree (sampled every 0.5 s), the ratio local / Ray (goal
>= 1.6), the resume's wall time against the first run's (goal <= 5 %), whether every trial's deterministic
metrics (status, Perf, PerfNorm, size) are identical across executors, and the local sweep's table.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil


def tree_rss_mb(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def timed_sweep(args: list[str], baselines: Path, log: Path) -> dict:
    """Run `compressor sweep ARGS --json`; wall seconds, peak tree RSS, the sweep document."""
    env = {**os.environ, "COMPRESSOR_BASELINES": str(baselines), "HF_HUB_OFFLINE": "1"}
    peak, done = [0.0], threading.Event()
    started = time.perf_counter()
    with open(log, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "compressor.cli", "sweep", *args, "--json"],
                                   stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)

        def sample():
            while not done.wait(0.5):
                peak[0] = max(peak[0], tree_rss_mb(process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out, _ = process.communicate()
        done.set()
        sampler.join()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"sweep {' '.join(args)} failed ({process.returncode}); see {log}")
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(peak[0]), "document": json.loads(out)}


def deterministic(document: dict) -> dict:
    return {t["id"]: (t["status"], t["metrics"].get("perf"), t["metrics"].get("perf_norm"),
                      t["metrics"].get("size_mb")) for t in document["trials"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", type=Path, default=Path(__file__).parent.parent / "sweeps" / "drop-w8a8.yaml")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-sweep"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--render", type=Path, default=None, help="print the table of a saved result, run nothing")
    args = parser.parse_args()
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    sweep = str(args.sweep.resolve())
    runs = {}
    runs["local"] = timed_sweep([sweep, "--out", str(args.work / "local")], args.work / "baselines-local",
                                args.work / "local.log")
    runs["ray"] = timed_sweep([sweep, "--out", str(args.work / "ray"), "--executor", "ray", "--workers",
                               str(args.workers)], args.work / "baselines-ray", args.work / "ray.log")
    runs["resume"] = timed_sweep([sweep, "--out", str(args.work / "local")], args.work / "baselines-local",
                                 args.work / "resume.log")
    result = {"sweep": sweep, "workers": args.workers, "cpus": os.cpu_count(), "runs": runs}
    (args.work / "sweep-bench.json").write_text(json.dumps(result, indent=1))
    print(render(result))


def render(result: dict) -> str:
    from compressor.reports.sweep import sweep_markdown

    runs = result["runs"]
    local, ray, resume = runs["local"], runs["ray"], runs["resume"]
    same = deterministic(local["document"]) == deterministic(ray["document"])
    lines = [f"({len(local['document']['trials'])} trials, {result['cpus']} CPUs, Ray with {result['workers']} "
             "workers)", "",
             "| run | wall s | peak memory (process tree) MB |", "|---|---|---|"]
    lines += [f"| {name} | {runs[name]['seconds']:.1f} | {runs[name]['peak_rss_mb']} |"
              for name in ("local", "ray", "resume")]
    lines += ["", f"local / Ray wall time: {local['seconds'] / ray['seconds']:.2f}x (goal >= 1.6x)",
              f"resume / first run: {resume['seconds'] / local['seconds']:.1%} (goal <= 5 %)",
              f"deterministic metrics (status, Perf, PerfNorm, size) identical across executors: {same}"]
    if not same:
        a, b = deterministic(local["document"]), deterministic(ray["document"])
        lines += [f"  {key}: local {a.get(key)} / ray {b.get(key)}" for key in sorted(set(a) | set(b))
                  if a.get(key) != b.get(key)]
    lines += ["", "The local sweep:", "", sweep_markdown(local["document"])]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
