#!/usr/bin/env bash
# The GPU path, checked on one CUDA machine (issue 20; about 10 minutes on one GPU), from the repo root:
#
#   scripts/gpu_check.sh                                              # .venv (CUDA torch) + .venv-vllm
#   COMPRESSOR_VLLM_PYTHON=/opt/vllm-cuda/bin/python scripts/gpu_check.sh   # a CUDA `vllm` in its own venv
#
# On the bundled SmolLM2-135M with device cuda: `apply` of fp16, w8a8 and a ranked drop + heal (100 steps),
# each judged in torch with workload timing; each evaluated again in vLLM with workload timing;
# `check --runtime vllm` of the fp16 output; then ONE JSON document of the figures on stdout (Score, Perf,
# ms/token per output and runtime, the check, the detected vLLM build, the GPU). Progress goes to stderr,
# everything else to a fresh work folder it names. Paste the JSON into benchmarks/RESULTS.md.
#
# Settings (environment): COMPRESSOR_PYTHON (default .venv/bin/python), COMPRESSOR_VLLM_PYTHON (default
# .venv-vllm/bin/python), GPU_CHECK_GPU_MEMORY_UTILIZATION (vLLM's share of the GPU, default 0.6),
# GPU_CHECK_EAGER=1 (start vLLM without compiling: faster, not the served engine), GPU_CHECK_WORK (the folder).
set -Eeuo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${COMPRESSOR_PYTHON:-.venv/bin/python}
GMU=${GPU_CHECK_GPU_MEMORY_UTILIZATION:-0.6}
EAGER=()
if [ "${GPU_CHECK_EAGER:-0}" = 1 ]; then EAGER=(--eager); fi

say() { echo "gpu_check: $*" >&2; }
die() { say "$*"; exit 2; }

[ -x "$PY" ] || die "no $PY: run \`make install\` (with a CUDA build of torch: README, GPU) or set COMPRESSOR_PYTHON"
if ! "$PY" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    torch_version=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo "not importable")
    die "no CUDA: torch ($torch_version) in $PY sees no GPU; run this on a CUDA machine with a CUDA build of torch (README, GPU)"
fi
VLLM_PY=${COMPRESSOR_VLLM_PYTHON:-.venv-vllm/bin/python}
[ -x "$VLLM_PY" ] || die "no vLLM environment at $VLLM_PY: install a CUDA \`vllm\` in its own venv and set COMPRESSOR_VLLM_PYTHON (README, GPU)"
export COMPRESSOR_VLLM_PYTHON=$VLLM_PY

WORK=${GPU_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")}
mkdir -p "$WORK/logs"
export COMPRESSOR_BASELINES="$WORK/baselines"  # the sources measured on this GPU, not taken from a cache
say "work dir $WORK (logs in $WORK/logs)"
STARTED=$SECONDS
STEP=""
trap 'say "failed at: $STEP (see $WORK/logs)"; tail -n 5 "$WORK/logs/$STEP.log" >&2 2>/dev/null || true' ERR

run() {  # run NAME CMD...: stdout to WORK/NAME.json, stderr to WORK/logs/NAME.log
    STEP=$1
    shift
    say "$STEP ($((SECONDS - STARTED)) s)"
    "$@" >"$WORK/$STEP.json" 2>"$WORK/logs/$STEP.log"
}

STEP=vllm-build
"$PY" -c 'import json; from compressor.runtimes.vllm_runtime import vllm_build; print(json.dumps(vllm_build()))' \
    >"$WORK/vllm-build.json" 2>"$WORK/logs/vllm-build.log"
if ! grep -q '"device_type": "cuda"' "$WORK/vllm-build.json"; then
    say "warning: $VLLM_PY is not a CUDA vLLM build ($(cat "$WORK/vllm-build.json")): its figures are not the GPU's"
fi

CLI=("$PY" -m compressor.cli)
MODEL='model={id: "builtin:smollm2-135m", device: cuda}'
EVAL=(--set eval.runtime=torch --set eval.suite=quick --set eval.timing=workload
      --set 'eval.latency={prompt_tokens: 128, new_tokens: 64, runs: 3, warmup: 1}')
OUTPUTS=(fp16 w8a8 minitron)  # recipes/minitron.yaml: ranked drop (block influence) + heal 100 steps + bf16
for name in "${OUTPUTS[@]}"; do
    run "apply-$name" "${CLI[@]}" apply "recipes/$name.yaml" --out "$WORK/$name" --set "$MODEL" "${EVAL[@]}" --json
done
for name in "${OUTPUTS[@]}"; do
    run "eval-vllm-$name" "${CLI[@]}" eval "$WORK/$name" --runtime vllm --timing workload \
        --gpu-memory-utilization "$GMU" ${EAGER[@]+"${EAGER[@]}"} --json
done
check_rc=0
run check-vllm-fp16 "${CLI[@]}" check "$WORK/fp16" --runtime vllm --device cuda \
    --gpu-memory-utilization "$GMU" ${EAGER[@]+"${EAGER[@]}"} --json || check_rc=$?

STEP=summary
"$PY" - "$WORK" "$check_rc" "$((SECONDS - STARTED))" "${OUTPUTS[@]}" <<'EOF'
import json
import subprocess
import sys
from pathlib import Path

import torch

work, check_rc, seconds, names = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]


def figures(ev: dict) -> dict:
    model, base = ev["model"], ev.get("baseline") or {}
    return {"device": ev.get("device"), "timing": ev.get("timing"), "score": ev.get("score"),
            "perf": model.get("perf"), "perf_norm": ev.get("perf_norm"), "speed_norm": ev.get("speed_norm"),
            "ms_per_token": model.get("tpt_ms"), "synthetic_ms_per_token": model.get("synthetic_tpt_ms"),
            "baseline_perf": base.get("perf"), "baseline_ms_per_token": base.get("tpt_ms"),
            "seconds": model.get("seconds"), "speed_caveat": ev.get("speed_caveat")}


outputs, builds = {}, []
for name in names:
    report = json.loads((work / name / "report.json").read_text())
    evals = report.get("evals") or {}
    outputs[name] = {label: figures(ev) for label, ev in evals.items()}
    builds += [ev["model"].get("vllm_build") for ev in evals.values() if ev["model"].get("vllm_build")]
check = {"output": "fp16", "runtime": "vllm", "exit_code": check_rc}
try:
    result = json.loads((work / "check-vllm-fp16.json").read_text())
    check.update(passed=result["passed"], reasons=result["reasons"], summary=result["summary"],
                 reference=result["reference"], runtime_info=result["runtime_info"])
except (OSError, ValueError, KeyError) as error:
    check.update(passed=False, error=f"no check result ({type(error).__name__}); see {work}/logs")
try:
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=60).stdout.strip().splitlines()
except (OSError, subprocess.SubprocessError):
    smi = []
print(json.dumps({
    "gpu": smi[0] if smi else torch.cuda.get_device_name(0), "gpu_count": torch.cuda.device_count(),
    "torch": torch.__version__, "cuda": torch.version.cuda,
    "vllm_build": builds[0] if builds else json.loads((work / "vllm-build.json").read_text()),
    "outputs": outputs, "check": check, "seconds": seconds, "work_dir": str(work),
}, indent=2))
EOF
say "done in $((SECONDS - STARTED)) s"
