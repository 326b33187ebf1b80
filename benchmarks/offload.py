"""Offloaded vs in-memory `apply` on the bundled model: peak memory, wall time and equality of the results.

    .venv/bin/python benchmarks/offload.py [--work /tmp/bench-offload] [--model builtin:smollm2-135m] [--resident 2]

Runs the gallery recipe drop-w8a8 (4 layers dropped, ranked by angular distance on 32 x 256 calibration tokens,
then W8A8-INT8 round-to-nearest) with `--no-eval`, twice, each in its own process: as it is (in memory), and with
`model: {device_map: auto, max_memory: {cpu: N}}`, N chosen so that accelerate keeps the embeddings and
`--resident` decoder layers on the CPU and puts the rest on disk. Peak RSS is each process's own (read by a
wrapper process from getrusage(RUSAGE_CHILDREN)). Equality: the same layers dropped, every saved tensor identical.
Prints a table and writes WORK/offload.json.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

RECIPE = "drop-w8a8"
# runs the command given as arguments; prints its exit code and peak RSS (bytes) as JSON
MEASURE = ("import json, resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
           "print(json.dumps({'code': code, 'peak': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))")


def cpu_budget(source: Path, resident: int) -> tuple[int, int, int]:
    """(max_memory for the CPU, layers it keeps, layers in all): accelerate's own placement, computed on an empty
    model; it also keeps room for the largest layer on the CPU, to onload it."""
    from accelerate import infer_auto_device_map, init_empty_weights
    from accelerate.utils import compute_module_sizes
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(source)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=config.dtype)
    model.tie_weights()
    sizes = compute_module_sizes(model)
    layers = config.num_hidden_layers
    for extra in range(resident, layers):  # the smallest budget that keeps `resident` layers
        budget = sizes[""] - sizes["model.layers"] + extra * sizes["model.layers.0"] + 1024
        device_map = infer_auto_device_map(model, max_memory={"cpu": budget},
                                           no_split_module_classes=model._no_split_modules)
        kept = sum(device_map.get(f"model.layers.{i}", device_map.get("model.layers")) == "cpu"
                   for i in range(layers))
        if kept >= resident:
            break
    return budget, kept, layers


def run(work: Path, name: str, model_override: str | None) -> dict:
    out = work / name
    cmd = [sys.executable, "-m", "compressor.cli", "apply", RECIPE, "--no-eval", "--force", "--out", str(out)]
    if model_override:
        cmd += ["--set", model_override]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    if measured["code"] != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    report = json.loads((out / "report.json").read_text())
    return {"name": name, "peak_mb": round(measured["peak"] / 2**20, 1), "seconds": round(seconds, 1),
            "dropped": report["stages"][0]["result"]["dropped_layers"], "out": str(out)}


def identical(a: Path, b: Path) -> tuple[bool, int]:
    import torch
    from safetensors.torch import load_file

    first, second = (load_file(folder / "model" / "model.safetensors") for folder in (a, b))
    same = first.keys() == second.keys() and all(
        first[k].dtype == second[k].dtype and torch.equal(first[k], second[k]) for k in first)
    return same, len(first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-offload"))
    parser.add_argument("--model", default="builtin:smollm2-135m")
    parser.add_argument("--resident", type=int, default=2, help="decoder layers kept on the CPU when offloaded")
    args = parser.parse_args()

    from compressor.models.sources import resolve_source

    source = resolve_source(args.model)  # materialised once, outside the measurements
    args.work.mkdir(parents=True, exist_ok=True)
    budget, kept, layers = cpu_budget(source.path, args.resident)
    model = f"model={{id: '{source.path}', device_map: auto, max_memory: {{cpu: {budget}}}}}"
    memory = run(args.work, "in-memory", f"model={{id: '{source.path}'}}")
    offloaded = run(args.work, "offloaded", model)
    same, tensors = identical(Path(memory["out"]), Path(offloaded["out"]))
    result = {"model": args.model, "recipe": RECIPE, "max_memory_cpu": budget, "layers_on_cpu": kept,
              "layers": layers, "runs": [memory, offloaded],
              "peak_ratio": round(offloaded["peak_mb"] / memory["peak_mb"], 3),
              "time_ratio": round(offloaded["seconds"] / memory["seconds"], 2),
              "same_layers_dropped": memory["dropped"] == offloaded["dropped"],
              "identical_tensors": same, "tensors": tensors}
    (args.work / "offload.json").write_text(json.dumps(result, indent=2) + "\n")

    print(f"{args.model}, recipe {RECIPE} (--no-eval); offloaded: max_memory cpu {budget / 1e6:.1f} MB "
          f"({kept} of {layers} layers on the CPU, the rest on disk)")
    print(f"{'run':10} {'peak RSS MB':>12} {'wall s':>8}  dropped layers")
    for row in (memory, offloaded):
        print(f"{row['name']:10} {row['peak_mb']:12.1f} {row['seconds']:8.1f}  {row['dropped']}")
    print(f"peak ratio offloaded / in-memory: {result['peak_ratio']:.3f} (goal <= 0.35); "
          f"wall time ratio: {result['time_ratio']:.2f}")
    print(f"same layers dropped: {result['same_layers_dropped']}; identical tensors: {same} ({tensors} tensors)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
