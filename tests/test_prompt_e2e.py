"""EHPC on the bundled SmolLM2-135M: discovery finds a middle layer, compression keeps the needle, vLLM
serves the exported folder and answers from the compressed prompt."""

import importlib.util

import pytest

from compressor.models.builtin import materialize_builtin
from repo import REPO_ROOT
from compressor.prompt.commands import discover_folder
from compressor.prompt.spec import read_spec
from compressor.prompt.stage import EvaluatorHeadsParams
from compressor.runtimes.vllm_runtime import vllm_python

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def smol_ehpc(tmp_path_factory):
    out = tmp_path_factory.mktemp("ehpc") / "smol"
    params = EvaluatorHeadsParams(stage="evaluator_heads", probe_tokens=768, depths=[0.25, 0.5, 0.75])
    discover_folder(materialize_builtin("smollm2-135m"), params, out=out, device="cpu")
    return out


@pytest.fixture(scope="module")
def passkey_item():
    from transformers import AutoTokenizer

    spec = importlib.util.spec_from_file_location("make_ehpc_tasks", REPO_ROOT / "scripts" / "make_ehpc_tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tokenizer = AutoTokenizer.from_pretrained(materialize_builtin("smollm2-135m"))
    [item] = module.make_tasks(tokenizer, per_kind=1, min_tokens=900, max_tokens=1100, seed=3, kinds=("passkey",))
    return item


def test_discovery_picks_a_middle_layer(smol_ehpc):
    spec = read_spec(smol_ehpc)
    assert spec.model.num_hidden_layers == 30 and len(spec.heads) == 8
    assert 6 <= spec.layer <= 27, spec.layer_scores  # not the embedding-adjacent or last layers
    median = sorted(spec.layer_scores)[15]
    assert spec.layer_scores[spec.layer] >= 2 * median


def test_compression_keeps_the_passkey_and_smollm2_still_answers(smol_ehpc, passkey_item):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from compressor.prompt import PromptCompressor

    pc = PromptCompressor.from_pretrained(smol_ehpc)
    assert pc.scorer.loaded_parameters < 0.95 * 134_515_008  # only layers 0..L*
    item = passkey_item
    result = pc.compress(item["context"], rate=0.25, question=item["question"])
    assert result.tokens_out <= result.budget + 2 and result.tokens_out < 0.3 * result.tokens_in
    assert item["answer"] in result.context
    tokenizer = AutoTokenizer.from_pretrained(smol_ehpc / "model")
    model = AutoModelForCausalLM.from_pretrained(smol_ehpc / "model", dtype=torch.float32).eval()
    prompt = f"{item['question']}\n\n{result.context}\n\n{item['question']}\nAnswer: {item['answer_prefix']}"
    enc = tokenizer(prompt, return_tensors="pt")
    ids = enc["input_ids"]
    out = model.generate(ids, attention_mask=enc["attention_mask"], max_new_tokens=10, do_sample=False,
                         pad_token_id=tokenizer.eos_token_id)
    assert item["answer"] in tokenizer.decode(out[0, ids.shape[1]:])


@pytest.mark.skipif(vllm_python() is None, reason="no .venv-vllm: run `make install-vllm` (CI does)")
def test_vllm_serves_the_folder_and_answers_from_the_compressed_prompt(smol_ehpc, passkey_item):
    from compressor.prompt import PromptCompressor
    from compressor.runtimes.vllm_runtime import run_vllm

    item = passkey_item
    short = PromptCompressor.from_pretrained(smol_ehpc).compress(item["context"], rate=0.25, question=item["question"])
    prompt = f"{item['question']}\n\n{short.context}\n\n{item['question']}\nAnswer: {item['answer_prefix']}"
    result = run_vllm({"model": str(smol_ehpc / "model"), "dtype": "float32", "enforce_eager": True,
                       "max_model_len": 2048, "generate": {"prompts": [prompt], "max_tokens": 10}})
    assert item["answer"] in result["generate"][0]["text"]


def test_scorer_onnx_export_compresses_like_torch(smol_ehpc, passkey_item, tmp_path):
    """scorer.onnx (layers 0..L*) in onnxruntime keeps the same words as the torch scorer on SmolLM2."""
    import torch

    from compressor.export.onnx_export import export_onnx
    from compressor.prompt import PromptCompressor
    from compressor.prompt.onnx_scorer import OnnxPromptCompressor

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        record = export_onnx(smol_ehpc, out=tmp_path / "onnx", scorer_only=True)
        summary = record["scorer"]["parity"]["summary"]
        assert summary["scores_max_abs_diff"] < 1e-4 and summary["kept_text_identical"]
        item = passkey_item
        want = PromptCompressor.from_pretrained(smol_ehpc).compress(item["context"], rate=0.25, question=item["question"])
        got = OnnxPromptCompressor.from_pretrained(tmp_path / "onnx", threads=1).compress(
            item["context"], rate=0.25, question=item["question"])
        assert got.text == want.text and item["answer"] in got.context
    finally:
        torch.set_num_threads(threads)
