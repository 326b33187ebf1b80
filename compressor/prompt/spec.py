"""`prompt_compressor.json`: the evaluator-head pre-compressor a model folder carries (EHPC, arXiv 2501.12959).

Written by discovery (the `evaluator_heads` stage or `compressor prompt discover`) into the model
folder, read by `PromptCompressor.from_pretrained`.
"""

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from compressor.core.errors import UserError
from compressor.core.validation import Strict
from compressor.core.layout import MODEL_DIR, PROMPT_SPEC_FILE, is_output

FORMAT = "compressor.prompt_compressor/1"


class Defaults(Strict):
    rate: float = Field(0.5, gt=0, le=1, description="share of prompt tokens kept when neither rate nor target is given")
    separator: str = Field("\n\n", description="between the context and an appended question")
    coarse: Literal["passages"] | None = Field(None, description="null: the published token-level selection; "
                                               "passages: rank the prompt's paragraphs first, select words in the best")
    reorder: bool = Field(False, description="with coarse passages: write the kept passages best first")

    @model_validator(mode="after")
    def _reorder_needs_passages(self):
        if self.reorder and self.coarse != "passages":
            raise ValueError("reorder orders passages: it needs coarse: passages")
        return self


class ModelShape(Strict):
    """The model the heads were found on; a folder whose config differs is refused."""
    model_type: str
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int


class Probe(Strict):
    needle: str
    question: str
    depths: list[float]
    tokens: int
    filler: str
    seed: int


class PromptCompressorSpec(Strict):
    format: str = FORMAT
    method: str = "ehpc"
    paper: str = "Fei et al., Efficient Prompt Compression with Evaluator Heads, arXiv 2501.12959"
    layer: int = Field(ge=0, description="L*: the evaluator layer; the scorer runs layers 0..L*")
    heads: list[int] = Field(min_length=1, description="evaluator heads of layer L* (query-head indices)")
    n_o: int = Field(gt=0, description="observation window: the last N_o query positions")
    kernel: int = Field(gt=0, description="AvgPool1d kernel r (stride 1) smoothing the token scores")
    defaults: Defaults = Field(default_factory=Defaults)
    max_layer: int | None = Field(None, ge=0, description="L* was searched among layers 0..max_layer (None: all)")
    model: ModelShape
    layer_scores: list[float] = Field(description="per layer: sum of its heads' scores")
    head_scores: list[list[float]] = Field(description="[layer][head]: attention mass on the needle from "
                                                       "the last N_o queries, mean over probe depths")
    probe: Probe

    @model_validator(mode="after")
    def _consistent(self):
        if self.layer >= self.model.num_hidden_layers:
            raise ValueError(f"layer {self.layer} >= num_hidden_layers {self.model.num_hidden_layers}")
        if self.max_layer is not None and self.layer > self.max_layer:
            raise ValueError(f"layer {self.layer} > max_layer {self.max_layer}")
        bad = [h for h in self.heads if not 0 <= h < self.model.num_attention_heads]
        if bad:
            raise ValueError(f"heads {bad} out of range for {self.model.num_attention_heads} heads")
        return self


def spec_folder(folder: Path) -> Path:
    """The model folder holding the spec: FOLDER itself or FOLDER/model (an output of `apply`)."""
    folder = Path(folder)
    return folder / MODEL_DIR if is_output(folder) else folder


def spec_path(folder: Path) -> Path:
    """Where FOLDER's prompt_compressor.json is (or would be)."""
    return spec_folder(folder) / PROMPT_SPEC_FILE


def read_spec(folder: Path) -> PromptCompressorSpec:
    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"{folder}: no such folder")
    path = spec_path(folder)
    if not path.is_file():
        raise UserError(f"{folder}: no {PROMPT_SPEC_FILE} (run `compressor prompt discover {folder}` or a recipe with "
                        f"the evaluator_heads stage first)")
    try:
        return PromptCompressorSpec.model_validate(json.loads(path.read_text()))
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise UserError(f"{path}: {where}: {first['msg'].removeprefix('Value error, ')}") from None


def check_matches(spec: PromptCompressorSpec, config, path: Path) -> None:
    """Refuse a spec found on a differently shaped model (e.g. layers dropped after discovery)."""
    actual = {
        "model_type": config.model_type,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
    }
    wrong = [f"{k} {getattr(spec.model, k)} (now {v})" for k, v in actual.items() if getattr(spec.model, k) != v]
    if wrong:
        raise UserError(f"{path / PROMPT_SPEC_FILE}: discovered on a different model: {', '.join(wrong)}; "
                        f"re-run `compressor prompt discover`")
