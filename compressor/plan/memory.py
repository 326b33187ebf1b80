"""The memory and disk a recipe needs, from the source's config alone (no weights read).

Each step of `apply` (load, every stage, write, evaluate) gets its peak: the process's own footprint,
the weights held (the model, and the heal teacher while a stage needs one) and what the step allocates
on top (each stage states its own: `StageParams.working_memory`). On the CPU a freed tensor mostly stays
in the process (glibc keeps small-block heaps), so each step adds its copies
rather than swapping them: on the CPU the plan is an upper bound of the resident set, checked against
measured peaks in benchmarks/plan.py. On a GPU, torch's cache reuses freed blocks, so a stage's working
memory is not carried into the next step; the GPU figures are unverified (no GPU has run them).
"""

from dataclasses import asdict, dataclass, field

from compressor.models.shape import ModelShape, config_dtype

MB = 2**20
# python + torch + transformers + compressor's pipeline imported (measured here: 307 MB RSS, torch 2.13 CPU)
CPU_PROCESS_BYTES = 307 * MB
# a CUDA context and torch's kernels on the device before the first tensor (typical; unmeasured here)
CUDA_CONTEXT_BYTES = 500 * MB
# lm-eval's requests, the suite's documents and the tokenizer's caches during an evaluation (measured on the
# quick suite with the bundled model)
EVALUATION_BYTES = 150 * MB
# tokens per lm-eval request the evaluation forward is sized for (fp32 logits and their log-softmax): the
# suites' loglikelihood requests are short; with 512 the plan met the measured peak of the quick suite
EVAL_TOKENS = 512


@dataclass
class Step:
    name: str
    parts: dict[str, int]

    @property
    def peak(self) -> int:
        return sum(self.parts.values())


@dataclass
class Plan:
    device: str
    model: str
    params: int
    dtype: str
    steps: list[Step]
    output_bytes: int  # the written model folder
    offload_bytes: int = 0  # weights accelerate moves to disk (model.offload_folder)
    budget: int | None = None  # memory the run may use on `device`, when known
    disk_free: int | None = None
    vllm: dict | None = None  # a CUDA evaluation in vLLM: its memory and KV-cache room
    notes: list[str] = field(default_factory=list)

    @property
    def peak(self) -> Step:
        return max(self.steps, key=lambda step: step.peak)

    @property
    def fits_memory(self) -> bool:
        return self.budget is None or self.peak.peak <= self.budget

    @property
    def fits_disk(self) -> bool:
        return self.disk_free is None or self.output_bytes + self.offload_bytes <= self.disk_free

    def to_dict(self) -> dict:
        data = asdict(self)
        data["steps"] = [{"name": s.name, "peak": s.peak, "parts": s.parts} for s in self.steps]
        data.update(peak=self.peak.peak, peak_step=self.peak.name, fits=self.fits_memory and self.fits_disk)
        return data


def shapes_through(recipe, config) -> list[ModelShape]:
    """The model's shape as loaded, then after each stage (from the stages' planned configs)."""
    import copy

    config = copy.deepcopy(config)
    if recipe.model.dtype != "auto":
        config.dtype = recipe.model.dtype
    shapes = [ModelShape.from_config(config, config_dtype(config))]
    for params in recipe.stages:
        config = params.planned_config(config)
        shapes.append(ModelShape.from_config(config, config_dtype(config)))
    return shapes


def resident_weights(shape: ModelShape, held: int, limit: int | None) -> int:
    """Weights in memory: all of them, or with offloading the share that fits `limit` plus the layer onloaded."""
    if limit is None or held <= limit:
        return held
    return limit + shape.largest_layer_bytes


def plan_steps(recipe, shapes: list[ModelShape], device_type: str, evaluate: bool,
               resident_limit: int | None = None) -> tuple[list[Step], int]:
    """Each step's parts (bytes), and the bytes of the weights written.

    The source's weights stay counted to the end and each stage's allocations are carried into the next
    steps (what a process once held it mostly keeps; see the module's docstring)."""
    source = shapes[0]
    base = {"process": CPU_PROCESS_BYTES if device_type == "cpu" else CUDA_CONTEXT_BYTES,
            "weights": resident_weights(source, source.weights_bytes, resident_limit)}
    steps = [Step("load", dict(base))]
    if any(params.needs_teacher for params in recipe.stages):
        base["teacher (source copy)"] = base["weights"]
    carried: dict[str, int] = {}
    held = source.weights_bytes
    for index, params in enumerate(recipe.stages):
        before, after = shapes[index], shapes[index + 1]
        label = f"stages[{index}] {params.stage}"
        working = {f"{label}: {name}": size for name, size in
                   params.working_memory(before, after, device_type).items()}
        steps.append(Step(label, {**base, **carried, **working}))
        if device_type == "cpu":  # torch's CUDA cache hands freed blocks to the next allocations instead
            carried.update(working)
        held = params.weights_after(after, held if after.weights_bytes == before.weights_bytes else after.weights_bytes)
    final = shapes[-1]
    # safetensors serialises each file in host memory: on a GPU run that copy is not on the device
    steps.append(Step("write", {**base, **carried, **({"serialised copy": held} if device_type == "cpu" else {})}))
    if evaluate and recipe.eval.runtime == "torch":
        # the judge loads the written model (quantized ones run decompressed, in their storage dtype), then
        # measures the source beside it unless its result is cached
        steps.append(Step("evaluate (torch)", {
            **base, "evaluation": EVALUATION_BYTES, "model": final.weights_bytes,
            "source (unless its result is cached)": source.weights_bytes,
            "evaluation forward": final.forward_bytes(recipe.eval.batch_size, EVAL_TOKENS, 4) * 2}))
    return steps, held
