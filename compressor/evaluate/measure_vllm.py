"""One model measured in vLLM (its own environment, a subprocess): the suite through lm-eval, time per token."""

from pathlib import Path

from compressor.core.files import count_params
from compressor.evaluate.suite import Suite, include_folder
from compressor.runtimes.vllm_runtime import run_vllm


def measure_vllm(folder: Path, suite: Suite, spec, progress) -> dict:
    with include_folder(suite) as tasks_dir:
        tasks = [{"task": t.task, "limit": min(x for x in (t.limit, spec.limit) if x) if (t.limit or spec.limit) else None}
                 for t in suite.tasks]
        result = run_vllm({"model": str(folder), "dtype": "auto",
                           "lm_eval": {"include_path": str(tasks_dir), "tasks": tasks, "batch_size": spec.batch_size},
                           "bench": {"prompt_tokens": spec.latency.prompt_tokens, "new_tokens": spec.latency.new_tokens,
                                     "runs": spec.latency.runs, "warmup": spec.latency.warmup,
                                     "batch_sizes": spec.latency.batch_sizes}})
    return {"tasks": result["lm_eval"], "latency": result["bench"], "dtype": result.get("dtype"),
            "params": count_params(folder), "load_s": result["load_s"], "vllm_versions": result["versions"]}
