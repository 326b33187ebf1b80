"""What an evaluation asks for (the `eval:` block of a recipe, or `compressor eval`'s options), and every check
of it that can run before a weight loads: the settings alone (pydantic), then against the models' configs."""

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from compressor.core.errors import UserError
from compressor.core.validation import MAX_COUNT, MAX_TOKENS, Strict
from compressor.evaluate.kv.long_context import ablation_points, check_length
from compressor.evaluate.kv.press import build_press, check_press_for_model, min_query_tokens
from compressor.evaluate.kv.spec import KVPressSpec, LongContextSpec
from compressor.evaluate.suite import TIMINGS, Suite, load_suite


class LatencySpec(Strict):
    prompt_tokens: int = Field(256, gt=0, le=MAX_TOKENS)
    new_tokens: int = Field(128, ge=2, le=MAX_TOKENS)
    runs: int = Field(5, gt=0, le=10_000)
    warmup: int = Field(1, ge=0, le=10_000)
    batch_sizes: list[Annotated[int, Field(gt=0, le=4096)]] = Field(default_factory=lambda: [1], min_length=1,
                                                                   max_length=16,
                                   description="the first one is used for Score")


class EngineSpec(Strict):
    """How the vLLM engine is started (the lg-aimers target states the server's)."""

    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="vLLM's share of GPU memory "
                                                 "(GPU builds; the CPU build sizes its cache by VLLM_CPU_KVCACHE_SPACE)")
    max_model_len: int | Literal["config"] | None = Field(
        None, description="context the engine allocates for; `config`: the model's max_position_embeddings "
                          "(what vLLM does when unset); default 4096")
    tensor_parallel_size: int = Field(1, ge=1, le=1024, description="GPUs one engine spans (GPU builds)")
    data_parallel_size: int = Field(1, ge=1, le=1024, description="lm-eval's engine replicas for the suite's tasks "
                                    "(GPU builds, needs ray; each replica spans tensor_parallel_size GPUs)")
    enforce_eager: bool = Field(False, description="start without compiling the model's graphs (vLLM's "
                                "enforce_eager): a faster start, slower steps; not the engine a server runs")

    @field_validator("max_model_len")
    @classmethod
    def _positive(cls, value):
        if isinstance(value, int) and value < 1:
            raise ValueError("must be >= 1 or `config`")
        return value


class EvalSpec(Strict):
    enabled: bool = True
    baseline: bool = Field(True, description="also measure the source model (or reuse its cached result)")
    suite: str = Field("default", description="a suite in eval/suites or a path to a suite YAML")
    runtime: Literal["torch", "vllm"] = "torch"
    limit: int | None = Field(None, gt=0, le=MAX_COUNT, description="cap every task at this many items (quick runs)")
    batch_size: int = Field(8, gt=0, le=4096)
    latency: LatencySpec = Field(default_factory=LatencySpec)
    kv_press: KVPressSpec | None = Field(None, description="a kvpress press applied while the model runs "
                                                          "(torch runtime only)")
    long_context: LongContextSpec | None = Field(None, description="perplexity, decode speed and memory on a "
                                                                  "long document (default on with a kv_press)")
    chat_template: bool | None = Field(None, description="generative tasks through the model's chat template "
                                                         "(default: the suite's setting)")
    timing: Literal[TIMINGS] | None = Field(None, description="the time per token the Score uses: workload or "
                                                              "synthetic (default: the suite's setting)")
    max_gen_toks: int | None = Field(None, gt=0, le=MAX_TOKENS, description="cap on every generative task's max_gen_toks")
    engine: EngineSpec | None = Field(None, description="vLLM engine settings (runtime vllm)")
    target: str | None = Field(None, description="the deployment target whose evaluation profile set these")

    @model_validator(mode="after")
    def _press_runtime(self):
        if self.runtime != "torch" and self.kv_press is not None and self.kv_press.active:
            raise ValueError(f"kv_press applies in the torch runtime only (kvpress hooks transformers attention), "
                             f"not {self.runtime}")
        if self.long_context is not None:
            try:
                ablation_points(self.kv_press, self.long_context)
            except (UserError, ValueError) as error:
                raise ValueError(str(error)) from None
        return self

    def press_run(self) -> bool:
        return self.kv_press is not None and self.kv_press.active

    def long_context_spec(self) -> LongContextSpec | None:
        return self.long_context or (LongContextSpec() if self.press_run() else None)


def check_for_models(spec: EvalSpec, configs: list) -> None:
    """Everything about a spec's timing, press and long-context pass that can fail on these models, from their
    configs."""
    for config in configs:
        positions = getattr(config, "max_position_embeddings", None)
        needed = spec.latency.prompt_tokens + spec.latency.new_tokens
        if positions and needed > positions:
            raise UserError(f"latency: prompt_tokens + new_tokens = {needed} > the model's {positions} positions")
    long_spec = spec.long_context_spec()
    if long_spec is None:
        return
    points = ablation_points(spec.kv_press if spec.press_run() else None, long_spec)
    for point in points:
        press = build_press(point)  # unknown kvpress options fail here
        if press is not None and long_spec.chunk < min_query_tokens(press):
            raise UserError(f"long_context.chunk: {long_spec.chunk} is too short for {point.press} (it scores "
                            f"with its last {min_query_tokens(press) - 1} queries; use chunk >= "
                            f"{min_query_tokens(press)})")
    for config in configs:
        for point in points:
            check_press_for_model(point, config)
        check_length(long_spec, points, config)


def chat_template_of(folder: Path) -> str | None:
    """The chat template a model folder's tokenizer carries (tokenizer_config.json or chat_template.jinja)."""
    jinja = Path(folder) / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    try:
        config = json.loads((Path(folder) / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config.get("chat_template") if isinstance(config, dict) else None


def check_chat_template(suite: Suite, spec: EvalSpec, folders: list) -> None:
    templated = [t.task for t in suite.tasks if suite.uses_chat_template(t, spec.chat_template)]
    if not templated:
        return
    for folder in folders:
        if not chat_template_of(folder):
            raise UserError(f"{folder}: the tokenizer has no chat template, and suite {suite.name} runs "
                            f"{', '.join(templated)} through it (evaluate with chat_template: false, or add a "
                            f"template to tokenizer_config.json)")


def check_folders(spec: EvalSpec, folders: list) -> Suite:
    """Everything about `spec` that can fail on these model folders, from their small files only: the suite
    loads, their tokenizers carry the chat template it asks for, presses fit their configs. Returns the suite."""
    suite = load_suite(spec.suite)
    check_chat_template(suite, spec, folders)
    if spec.long_context_spec() is not None:
        from transformers import AutoConfig

        check_for_models(spec, [AutoConfig.from_pretrained(folder) for folder in folders])
    return suite
