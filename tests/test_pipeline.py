import json
import struct

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import compressor.pipeline as pipeline
from compressor.core.errors import UserError
from compressor.models.sources import content_hash
from compressor.recipe import parse_recipe


def safetensors_dtypes(path) -> set[str]:
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


def recipe_for(model_dir, stages, **extra):
    return parse_recipe({"name": "t", "model": str(model_dir), "stages": stages,
                         "eval": {"enabled": False}, **extra})


@pytest.mark.parametrize("dtype, stored", [("float16", "F16"), ("bfloat16", "BF16"), ("fp32", "F32")])
def test_cast_writes_safetensors_in_that_dtype(tmp_path, tiny_dir, dtype, stored):
    out = tmp_path / "out"
    pipeline.apply_recipe(recipe_for(tiny_dir, [{"stage": "cast", "dtype": dtype}]), "t.yaml", out_dir=out)
    assert safetensors_dtypes(out / "model" / "model.safetensors") == {stored}
    model = AutoModelForCausalLM.from_pretrained(out / "model", dtype="auto")
    assert str(model.dtype) == f"torch.{ {'F16': 'float16', 'BF16': 'bfloat16', 'F32': 'float32'}[stored] }"


def test_output_folder_layout_and_provenance(tmp_path, tiny_llama_dir):
    out = tmp_path / "out"
    pipeline.apply_recipe(recipe_for(tiny_llama_dir, [{"stage": "cast", "dtype": "fp16"}]), "t.yaml", out_dir=out)
    assert {p.name for p in out.iterdir()} == {"model", "recipe.yaml", "report.json", "report.md"}
    files = {p.name for p in (out / "model").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "compressor.json"} <= files
    provenance = json.loads((out / "model" / "compressor.json").read_text())
    assert provenance["source"]["sha256"] == content_hash(tiny_llama_dir)
    assert provenance["stages"] == [{"stage": "cast", "params": {"stage": "cast", "dtype": "fp16"}}]
    assert "transformers" in provenance["versions"] and "torch" in provenance["versions"]
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    assert tokenizer.decode(tokenizer("안녕 hello")["input_ids"]) == "안녕 hello"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind


def test_source_is_never_modified(tmp_path, tiny_exaone4_dir):
    before = content_hash(tiny_exaone4_dir)
    stages = [{"stage": "drop_layers", "layers": [1]}, {"stage": "cast", "dtype": "bf16"}]
    pipeline.apply_recipe(recipe_for(tiny_exaone4_dir, stages), "t.yaml", out_dir=tmp_path / "out")
    assert content_hash(tiny_exaone4_dir) == before


def test_existing_output_needs_force(tmp_path, tiny_llama_dir):
    out = tmp_path / "out"
    recipe = recipe_for(tiny_llama_dir, [{"stage": "cast", "dtype": "fp16"}])
    pipeline.apply_recipe(recipe, "t.yaml", out_dir=out)
    marker = out / "model" / "config.json"
    stamp = marker.stat().st_mtime_ns
    with pytest.raises(UserError, match="already exists"):
        pipeline.apply_recipe(recipe, "t.yaml", out_dir=out)
    assert marker.stat().st_mtime_ns == stamp
    pipeline.apply_recipe(recipe, "t.yaml", out_dir=out, force=True)
    assert (out / "model" / "model.safetensors").is_file()


def test_interrupted_write_leaves_nothing(tmp_path, tiny_llama_dir, monkeypatch):
    def half_written(model, tokenizer, folder, provenance):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        raise OSError("disk full (injected)")

    monkeypatch.setattr(pipeline, "write_model", half_written)
    with pytest.raises(OSError, match="injected"):
        pipeline.apply_recipe(recipe_for(tiny_llama_dir, []), "t.yaml", out_dir=tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_overwrite_keeps_the_old_output(tmp_path, tiny_llama_dir, monkeypatch):
    out = tmp_path / "out"
    pipeline.apply_recipe(recipe_for(tiny_llama_dir, []), "t.yaml", out_dir=out)
    old = (out / "model" / "model.safetensors").read_bytes()

    def failing(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(pipeline, "write_model", failing)
    with pytest.raises(RuntimeError):
        pipeline.apply_recipe(recipe_for(tiny_llama_dir, []), "t.yaml", out_dir=out, force=True)
    assert (out / "model" / "model.safetensors").read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_eval_scores_against_the_source(tmp_path, tiny_llama_dir):
    recipe = parse_recipe({"name": "t", "model": str(tiny_llama_dir),
                           "stages": [{"stage": "drop_layers", "count": 1, "from": "top"}],
                           "eval": {"suite": "quick", "limit": 3, "latency": {"prompt_tokens": 16, "new_tokens": 4, "runs": 2}}})
    report = pipeline.apply_recipe(recipe, "t.yaml", out_dir=tmp_path / "out")
    ev = report["eval"]
    assert ev["model"]["params"] < ev["baseline"]["params"]
    assert ev["perf_norm"] == pytest.approx(ev["model"]["perf"] / ev["baseline"]["perf"])
    assert ev["speed_norm"] == pytest.approx(1 - ev["model"]["tpt_ms"] / ev["baseline"]["tpt_ms"])
    assert ev["score"] == pytest.approx(max(0.5 * ev["perf_norm"] + 0.5 * ev["speed_norm"], 0))
    assert set(ev["model"]["tasks"]) == {"minimal_pairs", "retrieval", "corpus_ppl"}
    assert (tmp_path / "out" / "report.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["eval"]["score"] == ev["score"]
    assert "Score" in (tmp_path / "out" / "report.md").read_text()


def test_unsupported_model_type_is_a_user_error(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=300)).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(UserError, match="model_type 'gpt2' is not supported"):
        pipeline.apply_recipe(recipe_for(tmp_path / "gpt2", []), "t.yaml", out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
