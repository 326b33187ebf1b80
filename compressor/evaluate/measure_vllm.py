"""One model measured in vLLM (its own environment, a subprocess): the suite through lm-eval, time per token."""

import json
from pathlib import Path

from compressor.core.errors import UserError
from compressor.core.files import count_params
from compressor.evaluate.suite import Suite, include_folder, task_limit
from compressor.runtimes.vllm_runtime import run_vllm

DEFAULT_MAX_MODEL_LEN = 4096


def engine_args(spec, folder: Path) -> dict:
    """vLLM engine settings from the spec's engine block (max_model_len `config`: the model's own positions;
    default: 4096 or the model's positions if fewer)."""
    engine = spec.engine
    positions = json.loads((Path(folder) / "config.json").read_text()).get("max_position_embeddings")
    length = engine.max_model_len if engine and engine.max_model_len is not None else None
    if length == "config":
        length = positions
    elif length is None:
        length = min(DEFAULT_MAX_MODEL_LEN, positions or DEFAULT_MAX_MODEL_LEN)
    args = {"max_model_len": length}
    if engine and engine.gpu_memory_utilization is not None:
        args["gpu_memory_utilization"] = engine.gpu_memory_utilization
    if engine and engine.tensor_parallel_size != 1:
        args["tensor_parallel_size"] = engine.tensor_parallel_size
    if engine and engine.enforce_eager:
        args["enforce_eager"] = True
    return args


def data_parallel_size(spec, timing: str) -> int:
    """lm-eval's replicas for the tasks; workload timing needs one engine (replicas start inside the timed calls)."""
    size = spec.engine.data_parallel_size if spec.engine else 1
    if size > 1 and timing == "workload":
        raise UserError(f"data_parallel_size {size}: lm-eval starts its replicas inside each batched call, so "
                        f"workload timing would time engine starts; use --timing synthetic or data_parallel_size 1")
    return size


def measure_vllm(folder: Path, suite: Suite, spec, progress, timing: str = "synthetic",
                 log_samples: bool = False) -> dict:
    replicas = data_parallel_size(spec, timing)
    with include_folder(suite, spec.max_gen_toks) as tasks_dir:
        tasks = [{"task": t.task, "limit": task_limit(t, spec.limit),
                  "chat_template": suite.uses_chat_template(t, spec.chat_template), "generative": t.generative}
                 for t in suite.tasks]
        # the server's way: lm-eval hands vLLM every request of a task at once ("auto"), vLLM batches them
        batch_size = "auto" if timing == "workload" else spec.batch_size
        result = run_vllm({"model": str(folder), "dtype": "auto", **engine_args(spec, folder),
                           "lm_eval": {"include_path": str(tasks_dir), "tasks": tasks, "batch_size": batch_size,
                                       "log_samples": log_samples,
                                       **({"data_parallel_size": replicas} if replicas > 1 else {})},
                           "bench": {"prompt_tokens": spec.latency.prompt_tokens, "new_tokens": spec.latency.new_tokens,
                                     "runs": spec.latency.runs, "warmup": spec.latency.warmup,
                                     "batch_sizes": spec.latency.batch_sizes}})
    return {"tasks": result["lm_eval"], "latency": result["bench"], "dtype": result.get("dtype"),
            "workload_raw": {**(result.get("workload") or {}), "dtype": result.get("dtype"), "batch_size": batch_size},
            "samples": result.get("samples") or {}, "engine": result.get("engine"),
            "params": count_params(folder), "load_s": result["load_s"], "vllm_versions": result["versions"],
            "vllm_build": result.get("build")}
