"""The EHPC scorer exported as scorer.onnx (compressor export onnx) and run in onnxruntime (prompt compress).

Tiny Llama, and tiny EXAONE-4 with sliding-window layers (window 16; the scorer of layer 3 runs three sliding
layers, then the full-attention layer's heads), one thread each side.
"""

import copy
import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

import compressor.runtimes.onnx_decoder as runtime_module
from cli_runner import run_cli
from compressor.core.errors import CheckFailed, UserError
from compressor.export import scorer_onnx
from compressor.core.layout import ONNX_RECORD_FILE as RECORD_FILE
from compressor.export.onnx_export import export_onnx
from compressor.prompt import PromptCompressor
from compressor.prompt.onnx_scorer import OnnxPromptCompressor
from compressor.prompt.probes import paragraphs
from compressor.core.layout import PROMPT_SPEC_FILE as SPEC_FILE
from test_prompt import ENGLISH, KOREAN, _spec_for

ATOL = 1e-4  # fp32 vs fp32; measured ~5e-8 on these models
LAYER = {"llama": 2, "exaone4": 3}  # exaone4: layers 0-2 sliding, layer 3 full attention


def long_text() -> str:
    """Real text without repeats (repeated text makes exact score ties under a sliding window), Korean inside."""
    return "\n\n".join(paragraphs()[100:110]) + "\n\n" + KOREAN + ENGLISH


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    opened = runtime_module.open_session
    monkeypatch.setattr(runtime_module, "open_session", lambda path, threads=None, spin=True: opened(path, 1, spin))
    yield
    torch.set_num_threads(torch_threads)


def ehpc_output(tmp_path, model_dir, kind, name="out"):
    """An `apply`-style output: model/ (a copy of the tiny model) with a prompt_compressor.json."""
    out = tmp_path / name
    shutil.copytree(model_dir, out / "model")
    spec = _spec_for(out / "model", layer=LAYER[kind], heads=(0, 3), n_o=6, kernel=5)
    (out / "model" / SPEC_FILE).write_text(spec.model_dump_json())
    return out


@pytest.fixture(scope="module", params=["llama", "exaone4"])
def scorer_export(request, tmp_path_factory, tiny_llama_dir, tiny_exaone4_dir):
    """(output folder, record) after `export_onnx(..., scorer_only=True)` for each family."""
    source = {"llama": tiny_llama_dir, "exaone4": tiny_exaone4_dir}[request.param]
    out = ehpc_output(tmp_path_factory.mktemp(f"scorer-{request.param}"), source, request.param)
    with torch.no_grad():
        torch.set_num_threads(1)
        return out, export_onnx(out, scorer_only=True)


def test_scorer_only_export_writes_a_checked_scorer(scorer_export):
    out, record = scorer_export
    names = {p.name for p in (out / "onnx").iterdir()}
    assert {"scorer.onnx", SPEC_FILE, "tokenizer.json", RECORD_FILE} <= names and "model.onnx" not in names
    assert json.loads((out / "onnx" / RECORD_FILE).read_text()) == json.loads(json.dumps(record))
    assert record["task"] == "ehpc-scorer" and record["artifacts"] == [] and record["parity"]["gated"] == ["scorer"]
    from compressor.export.check import onnx_artifact

    with pytest.raises(CheckFailed, match="only the prompt scorer .*--scorer-only"):
        onnx_artifact(out)  # what `check --runtime onnxruntime` looks for
    scorer = record["scorer"]
    assert scorer["passed"] and scorer["layers_exported"] == scorer["layer"] + 1 == LAYER[record["family"]] + 1
    summary = scorer["parity"]["summary"]
    print(f"\n{record['family']}: scorer parity {summary}")
    assert summary["scores_max_abs_diff"] <= ATOL and summary["kept_text_identical"]
    assert summary["kept_words_agreement"] == summary["kept_tokens_agreement"] == 1.0
    long_probe = scorer["parity"]["probes"][0]
    assert long_probe["tokens"] > 200 and long_probe["kept_words"] > 10  # >= 256 tokens asked: past the window
    assert scorer_onnx.gate_tokens(100, 0, 2048) == 256 and scorer_onnx.gate_tokens(2048, 4096, 8192) == 4160
    assert scorer_onnx.gate_tokens(2048, 4096, 3000) == 3000
    assert (out / "onnx" / SPEC_FILE).read_text() == (out / "model" / SPEC_FILE).read_text()


def test_plain_onnxruntime_scores_match_torch_at_any_length(scorer_export):
    """Dynamic sequence length: 1 token up to far past the sliding window and the traced length."""
    out, _ = scorer_export
    session = ort.InferenceSession(str(out / "onnx" / "scorer.onnx"), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape) == ("input_ids", "tensor(int64)", [1, "sequence_length"])
    assert (outp.name, outp.type, outp.shape) == ("scores", "tensor(float)", ["sequence_length"])
    torch_scorer = PromptCompressor.from_pretrained(out).scorer
    generator = torch.Generator().manual_seed(3)
    for n in (1, 5, 17, 40, 333):
        ids = torch.randint(3, 259, (1, n), generator=generator)
        (got,) = session.run(None, {"input_ids": ids.numpy()})
        expected = torch_scorer(ids).numpy()
        assert got.shape == expected.shape == (n,)
        assert np.abs(got - expected).max() <= ATOL, n


def test_onnxruntime_compressor_keeps_the_same_text(scorer_export):
    out, _ = scorer_export
    reference = PromptCompressor.from_pretrained(out)
    onnx = OnnxPromptCompressor.from_pretrained(out)
    assert onnx.spec == reference.spec and onnx.tail_tokens == reference.tail_tokens
    text = long_text()
    for kwargs in ({"rate": 0.3, "question": "When does the library open?"}, {"target_tokens": 90},
                   {"rate": 0.5, "force": ["umbrella"]}):
        want, got = reference.compress(text, **kwargs), onnx.compress(text, **kwargs)
        assert got.text == want.text and got.kept_spans == want.kept_spans and got.tokens_out == want.tokens_out
        assert got.text.encode("utf-8").decode("utf-8") == got.text and "\ufffd" not in got.text
    ids = torch.randint(3, 259, (150,), generator=torch.Generator().manual_seed(4))
    assert torch.equal(onnx.compress_ids(ids, rate=0.25), reference.compress_ids(ids, rate=0.25))
    assert OnnxPromptCompressor.from_pretrained(out / "onnx").spec == reference.spec  # the onnx folder alone


def test_cli_default_export_adds_the_scorer_and_compress_runs_it(monkeypatch, capsys, tmp_path, tiny_exaone4_dir):
    out = ehpc_output(tmp_path, tiny_exaone4_dir, "exaone4")
    code, stdout, err = run_cli(monkeypatch, capsys, "export", "onnx", str(out), "--json")
    assert code == 0, err
    record = json.loads(stdout)
    assert record["parity"]["gated"] == ["fp32", "scorer"] and record["artifacts"][0]["file"] == "model.onnx"
    assert record["scorer"]["parity"]["summary"]["kept_text_identical"]
    assert {"model.onnx", "scorer.onnx", SPEC_FILE} <= {p.name for p in (out / "onnx").iterdir()}

    prompt = tmp_path / "prompt.txt"
    prompt.write_text(long_text(), encoding="utf-8")
    args = ["prompt", "compress", str(out), str(prompt), "--rate", "0.3", "--question", "When does it open?"]
    code, torch_out, err = run_cli(monkeypatch, capsys, *args, "--json")
    assert code == 0, err
    code, onnx_out, err = run_cli(monkeypatch, capsys, *args, "--runtime", "onnxruntime", "--json")
    assert code == 0, err
    want, got = json.loads(torch_out), json.loads(onnx_out)
    assert (want["runtime"], got["runtime"]) == ("torch", "onnxruntime")
    assert got["text"] == want["text"] and got["tokens_out"] == want["tokens_out"] < got["tokens_in"]
    code, text_out, err = run_cli(monkeypatch, capsys, *args, "--runtime", "onnxruntime")
    assert code == 0 and text_out == want["text"] + "\n" and "ehpc (onnxruntime):" in err


def test_no_scorer_skips_it(monkeypatch, capsys, tmp_path, tiny_llama_dir):
    out = ehpc_output(tmp_path, tiny_llama_dir, "llama")
    code, stdout, err = run_cli(monkeypatch, capsys, "export", "onnx", str(out), "--no-scorer", "--json")
    assert code == 0, err
    assert json.loads(stdout)["scorer"] is None and not (out / "onnx" / "scorer.onnx").exists()


def test_scorer_requested_without_a_spec_is_a_one_line_error(monkeypatch, capsys, tmp_path, tiny_llama_dir):
    out = tmp_path / "plain"
    shutil.copytree(tiny_llama_dir, out / "model")

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr("compressor.models.sources.load_model", no_loading)
    for flag in ("--scorer", "--scorer-only"):
        code, _, err = run_cli(monkeypatch, capsys, "export", "onnx", str(out), flag)
        assert code == 2 and err.strip() == (
            f"error: {out / 'model'}: no {SPEC_FILE}, so no EHPC scorer to export (run `compressor prompt discover` "
            f"or a recipe with the evaluator_heads stage first, or drop --scorer)")
    code, _, err = run_cli(monkeypatch, capsys, "export", "onnx", str(out), "--scorer-only", "--no-scorer")
    assert code == 2 and "contradict" in err
    ehpc = ehpc_output(tmp_path, tiny_llama_dir, "llama", name="ehpc")
    code, _, err = run_cli(monkeypatch, capsys, "export", "onnx", str(ehpc), "--scorer-only", "--int8")
    assert code == 2 and err.strip() == "error: --int8 quantizes model.onnx, which --scorer-only does not write"
    assert not (out / "onnx").exists() and not (ehpc / "onnx").exists()

    prompt = tmp_path / "p.txt"
    prompt.write_text(ENGLISH)
    code, _, err = run_cli(monkeypatch, capsys, "prompt", "compress", str(ehpc), str(prompt), "--runtime", "onnxruntime")
    assert code == 2 and err.strip() == (f"error: {ehpc}: no scorer.onnx (run `compressor export onnx {ehpc}` on an "
                                         f"output with prompt_compressor.json first)")
    code, _, err = run_cli(monkeypatch, capsys, "prompt", "compress", str(ehpc), str(prompt), "--runtime", "onnxruntime",
                           "--method", "random")
    assert code == 2 and err.strip() == "error: --runtime onnxruntime applies to --method ehpc only"


def test_a_scorer_that_disagrees_is_not_written(monkeypatch, tmp_path, tiny_exaone4_dir):
    """The gate compares with the torch scorer: a graph with another smoothing kernel fails, nothing is left."""
    out = ehpc_output(tmp_path, tiny_exaone4_dir, "exaone4")
    real_export = scorer_onnx.export_scorer_graph

    def wrong_kernel(scorer, path, trace_tokens):
        other = copy.deepcopy(scorer)  # the torch reference keeps the spec's kernel
        other.pool = torch.nn.AvgPool1d(9, stride=1, padding=4, count_include_pad=False)
        real_export(other, path, trace_tokens)

    monkeypatch.setattr(scorer_onnx, "export_scorer_graph", wrong_kernel)
    with pytest.raises(CheckFailed, match=r"the ONNX scorer disagrees with torch: scores max abs diff .* > 0\.0001"):
        export_onnx(out, scorer_only=True)
    assert sorted(p.name for p in out.iterdir()) == ["model"]  # no onnx/, no staging folder left


def test_not_a_scorer_graph_is_refused(scorer_export, tmp_path):
    out, _ = scorer_export
    folder = tmp_path / "fake"
    folder.mkdir()
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(folder / "scorer.onnx"))
    for name in (SPEC_FILE, "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (out / "onnx" / name).exists():
            shutil.copy2(out / "onnx" / name, folder / name)
    with pytest.raises(UserError, match=r"not an EHPC scorer graph \(inputs \['x'\], outputs \['y'\]"):
        OnnxPromptCompressor.from_pretrained(folder)


def test_scorer_with_external_data_loads(monkeypatch, tmp_path, tiny_exaone4_dir):
    """Weights above 2 GB (EXAONE-4.0-1.2B's scorer) go to scorer.onnx_data: recorded, and the runtime loads them."""
    out = ehpc_output(tmp_path, tiny_exaone4_dir, "exaone4")
    monkeypatch.setenv("FORCE_ONNX_EXTERNAL_DATA", "1")  # optimum's switch: as if the graph were > 2 GB
    record = export_onnx(out, scorer_only=True)
    assert record["scorer"]["files"] == ["scorer.onnx", "scorer.onnx_data"]
    assert (out / "onnx" / "scorer.onnx").stat().st_size < (out / "onnx" / "scorer.onnx_data").stat().st_size
    text = long_text()
    assert OnnxPromptCompressor.from_pretrained(out).compress(text).text == PromptCompressor.from_pretrained(
        out).compress(text).text
