"""`compressor plan`: a recipe's memory and disk needs before anything loads, and the refusal `apply` gives
when they exceed what the machine has."""

from pathlib import Path

from compressor.core.errors import UserError
from compressor.models.sources import model_files
from compressor.plan.budget import available_memory, free_disk
from compressor.plan.memory import CUDA_CONTEXT_BYTES, Plan, plan_steps, shapes_through

GB = 1e9
# vLLM's defaults when the recipe's engine block leaves them unset
VLLM_GPU_MEMORY_UTILIZATION = 0.9
VLLM_MAX_MODEL_LEN = 4096  # what compressor's vLLM runtime asks for when max_model_len is unset
VLLM_PROFILE_TOKENS = 8192  # max_num_batched_tokens of the engine's profiling forward


def plan_recipe(recipe, config, device, source_dir: Path | None = None, out_dir: Path | None = None,
                memory: int | None = None, evaluate: bool | None = None) -> Plan:
    """The plan of `recipe` on `device` (a torch.device) for a source with this `config`; `memory` overrides
    what the device is found to have."""
    evaluate = recipe.eval.enabled if evaluate is None else evaluate
    shapes = shapes_through(recipe, config)
    limit = offload_limit(recipe, device)
    steps, written = plan_steps(recipe, shapes, device.type, evaluate, limit)
    budget = memory if memory is not None else available_memory(device.type, device.index)
    plan = Plan(device=str(device), model=recipe.model.id, params=shapes[0].params, dtype=shapes[0].dtype,
                steps=steps, output_bytes=written + _side_files(source_dir), budget=budget,
                disk_free=free_disk(out_dir) if out_dir is not None else None)
    if limit is not None and shapes[0].weights_bytes > limit:
        plan.offload_bytes = shapes[0].weights_bytes - limit
    if evaluate and recipe.eval.runtime == "vllm" and device.type == "cuda":
        plan.vllm = vllm_plan(recipe.eval, shapes[-1], written, budget)
    elif evaluate and recipe.eval.runtime == "vllm":
        plan.notes.append("vLLM's CPU build runs in its own process: the written weights plus "
                          "VLLM_CPU_KVCACHE_SPACE (2 GiB unless set) for its KV cache")
    if budget is None:
        plan.notes.append(f"no {device.type} memory found on this machine: give --memory to check the plan")
    return plan


def offload_limit(recipe, device) -> int | None:
    """With `model.device_map` and a `max_memory` entry for the run's device: the weights that stay resident."""
    if recipe.model.device_map is None:
        return None
    # ModelSpec has already read max_memory into {cpu | mps | CUDA index: bytes}
    return (recipe.model.max_memory or {}).get("cpu" if device.type == "cpu" else device.index or 0)


def vllm_plan(spec, shape, weights: int, budget: int | None) -> dict:
    """GPU memory vLLM takes (gpu_memory_utilization of the device), and how many tokens of KV cache remain
    after the weights and the profiling forward; the engine refuses to start below one max_model_len."""
    engine = spec.engine
    tp = engine.tensor_parallel_size if engine else 1
    utilization = (engine.gpu_memory_utilization if engine and engine.gpu_memory_utilization else
                   VLLM_GPU_MEMORY_UTILIZATION)
    max_len = engine.max_model_len if engine and engine.max_model_len else VLLM_MAX_MODEL_LEN
    if max_len == "config":
        max_len = shape.max_positions or VLLM_MAX_MODEL_LEN
    activation = VLLM_PROFILE_TOKENS * (4 * shape.hidden + 3 * shape.intermediate) * 2
    result = {"tensor_parallel_size": tp, "gpu_memory_utilization": utilization, "max_model_len": max_len,
              "weights_per_gpu": weights // tp, "profile_activations": activation,
              "kv_bytes_per_token": shape.kv_bytes_per_token() // tp}
    if budget is not None:
        engine_bytes = int(utilization * budget)
        kv = engine_bytes - weights // tp - activation - CUDA_CONTEXT_BYTES
        result.update(engine_bytes=engine_bytes, kv_cache_bytes=max(kv, 0),
                      kv_tokens=max(kv, 0) // result["kv_bytes_per_token"])
        result["fits"] = result["kv_tokens"] >= max_len
    return result


def _side_files(source_dir: Path | None) -> int:
    """Tokenizer and config files the output copies from the source (weights excluded)."""
    if source_dir is None:
        return 0
    return sum(p.stat().st_size for p in model_files(source_dir) if p.suffix not in (".safetensors", ".bin"))


def advice(recipe, plan: Plan) -> list[str]:
    """What to change, from the step that does not fit."""
    tips = []
    step = plan.peak
    for index, params in enumerate(recipe.stages):
        if step.name == f"stages[{index}] {params.stage}" and params.memory_hint:
            tips.append(f"stages[{index}] ({params.stage}): {params.memory_hint}")
    if plan.budget is not None and step.parts.get("weights", 0) > plan.budget / 3:
        tips.append("model.device_map: auto with model.max_memory and model.offload_folder (layers wait on CPU "
                    "or disk and load one at a time)")
    if step.name.startswith("evaluate"):
        tips.append("--no-eval now and `compressor eval OUT` later, or a smaller eval.batch_size")
    return tips


def refusal(recipe, plan: Plan, source: str) -> str | None:
    """The one line `apply` stops with when the plan does not fit, else None."""
    if not plan.fits_disk:
        return (f"{source}: the output needs {(plan.output_bytes + plan.offload_bytes) / GB:.1f} GB of disk "
                f"and {plan.disk_free / GB:.1f} GB are free there")
    if not plan.fits_memory:
        step = plan.peak
        biggest = sorted(step.parts.items(), key=lambda kv: -kv[1])[:3]
        parts = ", ".join(f"{name} {size / GB:.2f} GB" for name, size in biggest)
        tips = "; ".join(advice(recipe, plan)) or "a machine with more memory"
        return (f"{source}: {step.name} needs ~{step.peak / GB:.1f} GB on {plan.device} ({parts}) and "
                f"{plan.budget / GB:.1f} GB are available; try: {tips} (see `compressor plan`; "
                f"--memory SIZE states what the run may use)")
    vllm = getattr(plan, "vllm", None)
    if vllm and vllm.get("fits") is False:
        return (f"{source}: eval in vLLM leaves room for {vllm['kv_tokens']:,} tokens of KV cache, fewer than "
                f"max_model_len {vllm['max_model_len']:,}; raise eval.engine.gpu_memory_utilization, lower "
                f"eval.engine.max_model_len, or raise eval.engine.tensor_parallel_size")
    return None


def check_plan(recipe, config, device, source: str, source_dir: Path, out_dir: Path, memory: int | None,
               evaluate: bool) -> Plan:
    plan = plan_recipe(recipe, config, device, source_dir, out_dir, memory, evaluate)
    message = refusal(recipe, plan, source)
    if message:
        raise UserError(message)
    return plan
