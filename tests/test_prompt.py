"""EHPC prompt pre-compressor (arXiv 2501.12959) on tiny models: discovery, scoring, selection, files, CLI."""

import io
import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM

from cli_runner import run_cli
from compressor.core.errors import UserError
from compressor.models.adapters import adapter_for
from compressor.models.tiny import byte_tokenizer, tiny_exaone4_config, tiny_llama_config, tiny_model
from compressor.pipeline import apply_recipe
from compressor.prompt import PromptCompressor
from compressor.prompt.baselines import KeepEnds, RandomKeep
from compressor.prompt.discovery import choose_heads, discover
from compressor.prompt.probes import paragraphs
from compressor.prompt.scorer import load_scorer
from compressor.prompt.selection import select_tokens
from compressor.core.layout import HEATMAP_FILE, PROMPT_SPEC_FILE as SPEC_FILE
from compressor.prompt.spec import read_spec
from compressor.prompt.stage import EvaluatorHeadsParams
from compressor.recipe import parse_recipe

PLANTED_LAYER, PLANTED_HEAD = 2, 1
D_CONST, D_MARK = 0, 1  # residual dimensions the plant uses
PAIR_DIM = 7  # the lowest-frequency RoPE pair of head_dim 16: almost position independent


def _marker(tokenizer) -> tuple[str, int]:
    """An ASCII character absent from the filler corpus, and its token id."""
    filler = "".join(paragraphs())
    char = next(c for c in "~^|#$`@%" if c not in filler)
    return char, tokenizer(char, add_special_tokens=False)["input_ids"][0]


def planted_model(kind: str):
    """A tiny model whose layer-2 head 1 attends to one marker token, wherever it is.

    Residual dims D_CONST (constant) and D_MARK (set on the marker's embedding only) pass layers 0-1
    untouched; layer 2's head 1 turns D_CONST into its query and D_MARK into its key-value group's key
    on the lowest-frequency RoPE pair, so its attention logit is large on the marker and zero elsewhere.
    """
    config = tiny_llama_config() if kind == "llama" else tiny_exaone4_config()
    model = tiny_model(config, seed=1)
    tokenizer = byte_tokenizer()
    _, marker_id = _marker(tokenizer)
    adapter = adapter_for(model.config)
    hd = config.head_dim
    group = PLANTED_HEAD // (config.num_attention_heads // config.num_key_value_heads)
    with torch.no_grad():
        embed = adapter.embed_tokens(model).weight
        embed[:, D_CONST] = 1.0
        embed[:, D_MARK] = 0.0
        embed[marker_id, D_MARK] = 1.0
        layers = adapter.decoder_layers(model)
        for layer in layers[:PLANTED_LAYER]:
            adapter.attention(layer).o_proj.weight[[D_CONST, D_MARK]] = 0.0
            adapter.mlp(layer).down_proj.weight[[D_CONST, D_MARK]] = 0.0
        attn = adapter.attention(layers[PLANTED_LAYER])
        pair = [PAIR_DIM, PAIR_DIM + hd // 2]
        for head in range(config.num_attention_heads):
            attn.q_proj.weight[[head * hd + d for d in pair]] = 0.0
        attn.k_proj.weight[[group * hd + d for d in pair]] = 0.0
        strength = 60.0
        attn.q_proj.weight[PLANTED_HEAD * hd + PAIR_DIM, D_CONST] = strength
        attn.k_proj.weight[group * hd + PAIR_DIM, D_MARK] = strength
        if hasattr(attn, "q_norm"):  # EXAONE-4 QK-norm rescales q and k per head: widen that pair's gain
            attn.q_norm.weight[PAIR_DIM] = 6.0
            attn.k_norm.weight[PAIR_DIM] = 6.0
    return model, tokenizer


@pytest.mark.parametrize("kind", ["llama", "exaone4"])
def test_discovery_finds_the_planted_head(kind):
    model, tokenizer = planted_model(kind)
    marker, _ = _marker(tokenizer)
    needle = f"The magic word is {marker}zebra{marker}."
    params = EvaluatorHeadsParams(stage="evaluator_heads", heads=1, n_o=8, kernel=4, probe_tokens=400,
                                  needle=needle, question="What is the magic word?", depths=[0.2, 0.5, 0.8])
    spec = discover(model, tokenizer, adapter_for(model.config), params)
    assert spec.layer == PLANTED_LAYER and spec.heads == [PLANTED_HEAD] and spec.max_layer is None
    scores = torch.tensor(spec.head_scores)
    assert scores.shape == (4, 4)
    assert scores[PLANTED_LAYER, PLANTED_HEAD] > 0.5  # most of its attention is on the needle
    assert scores[PLANTED_LAYER, PLANTED_HEAD] > 3 * scores.flatten().sort().values[-2]
    # Capped below the planted layer, the search takes the best shallower layer, from the same scores.
    shallow = discover(model, tokenizer, adapter_for(model.config),
                       params.model_copy(update={"max_layer": PLANTED_LAYER - 1}))
    assert shallow.max_layer == PLANTED_LAYER - 1 and shallow.layer < PLANTED_LAYER
    assert shallow.layer == int(scores[:PLANTED_LAYER].sum(1).argmax())
    assert torch.allclose(torch.tensor(shallow.head_scores), scores)


def test_choose_heads_searches_only_up_to_max_layer():
    scores = torch.tensor([[0.1, 0.3, 0.2], [0.0, 0.1, 0.0], [0.5, 0.1, 0.9], [0.2, 0.2, 0.1]])
    assert choose_heads(scores, 2) == (2, [0, 2], pytest.approx([0.6, 0.1, 1.5, 0.5]))
    assert choose_heads(scores, 2, max_layer=1)[:2] == (0, [1, 2])
    assert choose_heads(scores, 5, max_layer=3)[:2] == (2, [0, 1, 2])  # heads capped at the layer's count


def _spec_for(folder, layer, heads=(0, 1), n_o=4, kernel=3):
    from compressor.prompt.spec import PromptCompressorSpec

    config = json.loads((folder / "config.json").read_text())
    n_layers, n_heads = config["num_hidden_layers"], config["num_attention_heads"]
    return PromptCompressorSpec(
        layer=layer, heads=list(heads), n_o=n_o, kernel=kernel,
        model={"model_type": config["model_type"], "num_hidden_layers": n_layers, "num_attention_heads": n_heads,
               "num_key_value_heads": config["num_key_value_heads"]},
        layer_scores=[0.0] * n_layers, head_scores=[[0.0] * n_heads] * n_layers,
        probe={"needle": "n", "question": "q", "depths": [0.5], "tokens": 100, "filler": "f", "seed": 0})


def test_from_pretrained_loads_only_layers_up_to_L_star(tiny_dir, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tiny_dir, folder)
    full = AutoModelForCausalLM.from_pretrained(folder)
    adapter = adapter_for(full.config)
    layers = adapter.decoder_layers(full)
    embed = adapter.embed_tokens(full).weight.numel()
    per_layer = sum(p.numel() for p in layers[0].parameters())
    attention_part = sum(p.numel() for m in adapter.attention_parts(layers[1]).values() for p in m.parameters())
    for layer in (0, 1, 2):
        scorer = load_scorer(folder, _spec_for(folder, layer))
        assert scorer.loaded_parameters == embed + layer * per_layer + attention_part
        assert scorer.loaded_parameters == sum(p.numel() for p in scorer.parameters())
        assert all(not k.startswith(f"model.layers.{layer + 1}.") for k in scorer.loaded_tensors)
        assert not any("mlp" in k for k in scorer.loaded_tensors if k.startswith(f"model.layers.{layer}."))
        assert not any(p.is_meta for p in scorer.parameters())
    assert scorer.loaded_parameters < sum(p.numel() for p in full.parameters())


def test_select_tokens_exact_budget_order_and_tail():
    scores = torch.tensor([5.0, 0.1, 9.0, 0.2, 7.0, 0.3, 0.0, 0.0])
    keep = select_tokens(scores, k=5, n_o=2)
    assert keep.tolist() == [0, 2, 4, 6, 7]  # top 3 in order + the last N_o = 2
    protected = torch.zeros(8, dtype=torch.bool)
    protected[1] = True
    assert select_tokens(scores, k=5, n_o=2, protected=protected).tolist() == [1, 2, 4, 6, 7]
    for k in range(2, 9):
        chosen = select_tokens(torch.rand(8), k, n_o=2)
        assert len(chosen) == k and chosen.tolist() == sorted(chosen.tolist()) and {6, 7} <= set(chosen.tolist())
    with pytest.raises(UserError, match="exceed the budget of 2"):
        select_tokens(scores, k=2, n_o=3)


@pytest.fixture(scope="module")
def ehpc_dir(tmp_path_factory, tiny_llama_dir):
    folder = tmp_path_factory.mktemp("ehpc") / "model"
    shutil.copytree(tiny_llama_dir, folder)
    (folder / SPEC_FILE).write_text(_spec_for(folder, layer=2, heads=(0, 2), n_o=6, kernel=5).model_dump_json())
    return folder


def test_compress_ids_returns_exactly_the_budget(ehpc_dir):
    pc = PromptCompressor.from_pretrained(ehpc_dir)
    ids = torch.randint(3, 259, (200,), generator=torch.Generator().manual_seed(1))
    for rate in (0.1, 0.25, 0.5, 1.0):
        kept = pc.compress_ids(ids, rate=rate)
        assert len(kept) == max(6, -(-200 * rate // 1))
        assert torch.equal(kept[-6:], ids[-6:])  # the last N_o verbatim
    scores = pc.token_scores(ids[None])
    chosen = select_tokens(scores, 50, 6)
    assert chosen.tolist() == sorted(chosen.tolist())  # original order
    assert torch.equal(pc.compress_ids(ids, target_tokens=50), ids[chosen])
    assert set(chosen[:-6].tolist()) == set(scores[:-6].topk(44).indices.tolist())  # the best-scored rest


KOREAN = ("서울의 날씨는 오늘 맑고 따뜻합니다. 비밀 번호는 파란색 고양이입니다. 내일은 비가 올 수 있으니 "
          "우산을 챙기세요. 도서관은 아홉 시에 문을 엽니다. ")
ENGLISH = "The library opens at nine. Bring an umbrella tomorrow because rain is likely in the afternoon. "


@pytest.mark.parametrize("method", ["ehpc", "random", "ends"])
def test_korean_and_english_stay_valid_whole_words(ehpc_dir, method):
    pc = {"ehpc": PromptCompressor, "random": RandomKeep, "ends": KeepEnds}[method].from_pretrained(ehpc_dir)
    prompt = (KOREAN + ENGLISH) * 3
    question = "비밀 번호는 무엇입니까?"
    result = pc.compress(prompt, rate=0.5, question=question, force=["파란색 고양이"])
    assert "\ufffd" not in result.text
    result.text.encode("utf-8")  # valid UTF-8 (no lone surrogates)
    assert result.text.endswith(question) and "파란색 고양이" in result.context
    assert result.tokens_out <= result.budget + 2 < result.tokens_in
    # the text is the kept spans in order, and each span is a whole word (or one punctuation mark)
    source = result.source
    assert result.kept_spans == sorted(result.kept_spans)
    assert result.text == "".join(source[s:e] for s, e in result.kept_spans).strip()
    for s, e in result.kept_spans:
        word = source[s:e].strip()
        start = s + source[s:e].index(word)
        end = start + len(word)
        assert word.isalnum() or len(word) == 1, word
        if word.isalnum():
            assert (start == 0 or not source[start - 1].isalnum()) and (end == len(source) or not source[end].isalnum())


def test_bad_inputs_give_clear_errors(ehpc_dir, tmp_path, tiny_llama_dir):
    pc = PromptCompressor.from_pretrained(ehpc_dir)
    with pytest.raises(UserError, match="^empty prompt: nothing to compress$"):
        pc.compress("   \n")
    for rate in (0, -0.5, 1.5):
        with pytest.raises(UserError, match=rf"^rate must be in \(0, 1\], got {rate}$"):
            pc.compress(ENGLISH, rate=rate)
    with pytest.raises(UserError, match="either rate or target_tokens"):
        pc.compress(ENGLISH, rate=0.5, target_tokens=10)
    with pytest.raises(UserError, match="force-keep text 'absent' does not occur"):
        pc.compress(ENGLISH, force=["absent"])
    with pytest.raises(UserError, match=rf"^{tiny_llama_dir}: no {SPEC_FILE} \(run `compressor prompt discover"):
        PromptCompressor.from_pretrained(tiny_llama_dir)
    broken = tmp_path / "broken"
    shutil.copytree(ehpc_dir, broken)
    (broken / SPEC_FILE).write_text('{"layer": 9}')
    with pytest.raises(UserError, match=rf"{SPEC_FILE}: heads: Field required"):
        PromptCompressor.from_pretrained(broken)
    spec = json.loads((ehpc_dir / SPEC_FILE).read_text())
    spec["model"]["num_hidden_layers"] = 30
    spec["layer"] = 17
    (broken / SPEC_FILE).write_text(json.dumps(spec))
    with pytest.raises(UserError, match="discovered on a different model: num_hidden_layers 30 \\(now 4\\)"):
        PromptCompressor.from_pretrained(broken)


def _ehpc_recipe(model_dir, out, stages_after=()):
    return parse_recipe({"name": "ehpc-tiny", "model": str(model_dir),
                         "stages": [{"stage": "evaluator_heads", "probe_tokens": 300, "depths": [0.3, 0.7],
                                     "n_o": 8, "kernel": 4}, *stages_after],
                         "eval": {"enabled": False}, "output": {"dir": str(out)}}, "ehpc.yaml")


def test_stage_writes_the_spec_into_the_model_folder_and_from_pretrained_reads_it(tiny_dir, tmp_path):
    out = tmp_path / "out"
    report = apply_recipe(_ehpc_recipe(tiny_dir, out, [{"stage": "cast", "dtype": "float16"}]), "ehpc.yaml",
                          evaluate=False)
    spec = read_spec(out)
    assert (out / "model" / SPEC_FILE).is_file() and (out / HEATMAP_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "model" / HEATMAP_FILE).exists()
    assert report["stages"][0]["result"]["layer"] == spec.layer and spec.n_o == 8 and spec.kernel == 4
    assert len(spec.head_scores) == 4 and spec.heads == sorted(spec.heads) and len(spec.heads) == 4
    pc = PromptCompressor.from_pretrained(out)  # an output folder: reads model/prompt_compressor.json
    assert pc.spec == spec and pc.scorer.loaded_parameters > 0
    assert pc.scorer.embed_tokens.weight.dtype == torch.float32  # fp16 weights upcast for the CPU scorer
    result = pc.compress(ENGLISH * 10, rate=0.25, question="When does the library open?")
    assert result.tokens_out <= result.budget + 2 and result.text.endswith("When does the library open?")
    AutoModelForCausalLM.from_pretrained(out / "model")  # the folder still loads with the stock loader


def test_max_layer_past_the_model_is_refused_before_any_work(tiny_llama_dir, tmp_path):
    recipe = parse_recipe({"name": "deep", "model": str(tiny_llama_dir),
                           "stages": [{"stage": "evaluator_heads", "max_layer": 4, "probe_tokens": 300}],
                           "eval": {"enabled": False}, "output": {"dir": str(tmp_path / "o")}}, "deep.yaml")
    with pytest.raises(UserError, match=r"max_layer 4 >= the model's num_hidden_layers 4 \(layers are numbered from 0\)"):
        apply_recipe(recipe, "deep.yaml", evaluate=False)
    assert not (tmp_path / "o").exists()


def test_layer_changes_after_discovery_are_refused(tiny_llama_dir, tmp_path):
    with pytest.raises(UserError, match=r"^ehpc\.yaml: stages\[1\] \(drop_layers\) changes decoder layers after "
                                        r"stages\[0\] \(evaluator_heads\) .*move evaluator_heads after drop_layers$"):
        _ehpc_recipe(tiny_llama_dir, tmp_path / "o", [{"stage": "drop_layers", "count": 1, "from": "top"}])
    recipe = parse_recipe({"name": "ok", "stages": [{"stage": "drop_layers", "count": 1, "from": "top"},
                                                    {"stage": "evaluator_heads"}]}, "ok.yaml")
    assert [s.stage for s in recipe.stages] == ["drop_layers", "evaluator_heads"]


def test_cli_discover_and_compress(monkeypatch, capsys, tiny_llama_dir, tmp_path):
    options = ["--probe-tokens", "300", "--n-o", "8", "--kernel", "4"]
    code, _, err = run_cli(monkeypatch, capsys, "prompt", "discover", str(tiny_llama_dir), *options)
    assert code == 2 and "pass --out OUT (the source model is never modified)" in err
    assert not (tiny_llama_dir / SPEC_FILE).exists()
    out = tmp_path / "out"
    code, stdout, err = run_cli(monkeypatch, capsys, "prompt", "discover", str(tiny_llama_dir), "--out", str(out),
                                *options, "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert (out / "model" / SPEC_FILE).is_file() and (out / HEATMAP_FILE).is_file()
    assert result["layer"] == read_spec(out).layer
    code, _, err = run_cli(monkeypatch, capsys, "prompt", "discover", str(out), *options)
    assert code == 2 and "already exists (pass --force" in err
    code, _, err = run_cli(monkeypatch, capsys, "prompt", "discover", str(out), *options, "--max-layer", "4", "--force")
    assert code == 2 and "options: max_layer 4 >= the model's num_hidden_layers 4" in err
    code, _, err = run_cli(monkeypatch, capsys, "prompt", "discover", str(out), *options, "--max-layer", "0", "--force")
    assert code == 0, err
    assert "L* = 0," in err and read_spec(out).layer == 0 and read_spec(out).max_layer == 0

    prompt = tmp_path / "prompt.txt"
    prompt.write_text((ENGLISH + KOREAN) * 6, encoding="utf-8")
    page = tmp_path / "kept.html"
    code, stdout, err = run_cli(monkeypatch, capsys, "prompt", "compress", str(out), str(prompt), "--rate", "0.3",
                                "--question", "When does the library open?", "--force-keep", "umbrella",
                                "--html", str(page), "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["method"] == "ehpc" and summary["tokens_out"] < summary["tokens_in"]
    assert "umbrella" in summary["text"] and summary["text"].endswith("When does the library open?")
    assert '<span class="k"' in page.read_text(encoding="utf-8")

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(prompt.read_bytes()), encoding="utf-8"))
    code, stdout, err = run_cli(monkeypatch, capsys, "prompt", "compress", str(out), "--target-tokens", "200")
    assert code == 0, err
    assert "ehpc:" in err and "-> " in err and len(stdout.encode()) < len(prompt.read_bytes())
    assert "\ufffd" not in stdout

    code, stdout, err = run_cli(monkeypatch, capsys, "prompt", "compress", str(out), str(prompt), "--rate", "0.3",
                                "--dtype", "bfloat16", "--json")
    assert code == 0, err
    half = json.loads(stdout)
    assert half["dtype"] == "bfloat16" and 0 < half["tokens_out"] <= half["budget"] and "\ufffd" not in half["text"]
    from compressor.prompt.commands import load_compressor

    assert load_compressor(out, "ehpc", dtype="bfloat16").scorer.embed_tokens.weight.dtype == torch.bfloat16
    code, _, err = run_cli(monkeypatch, capsys, "prompt", "compress", str(out), str(prompt), "--runtime", "onnxruntime",
                           "--dtype", "bfloat16")
    assert code == 2 and "--dtype place the torch scorer" in err

    for args, message in [(["--rate", "0"], "error: rate must be in (0, 1], got 0.0"),
                          (["--rate", "1.5"], "error: rate must be in (0, 1], got 1.5")]:
        code, _, err = run_cli(monkeypatch, capsys, "prompt", "compress", str(out), str(prompt), *args)
        assert code == 2 and err.strip() == message
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code, _, err = run_cli(monkeypatch, capsys, "prompt", "compress", str(out), str(empty))
    assert code == 2 and err.strip() == "error: empty prompt: nothing to compress"
    code, _, err = run_cli(monkeypatch, capsys, "prompt", "compress", str(tiny_llama_dir), str(prompt))
    assert code == 2 and f"no {SPEC_FILE}" in err and "Traceback" not in err


def test_llmlingua_baseline_runs_offline_behind_the_same_interface(tiny_llama_dir, monkeypatch):
    pytest.importorskip("llmlingua")
    import tiktoken

    from compressor.prompt.llmlingua_baseline import LLMLinguaCompressor

    def no_download(*args, **kwargs):
        raise AssertionError("tiktoken tried to fetch an encoding")

    monkeypatch.setattr(tiktoken, "get_encoding", no_download)
    pc = LLMLinguaCompressor.from_pretrained(tiny_llama_dir)
    assert pc.lingua.oai_tokenizer.encode("ab") == pc.tokenizer("ab", add_special_tokens=False)["input_ids"]
    result = pc.compress(ENGLISH * 6, rate=0.3, question="When does the library open?")
    assert result.method == "llmlingua" and result.tokens_out < result.tokens_in
    assert result.text.endswith("When does the library open?") and result.context
    with pytest.raises(UserError, match="empty prompt"):
        pc.compress("")


def test_longllmlingua_ranks_paragraphs_by_the_question(tiny_llama_dir):
    pytest.importorskip("llmlingua")
    from compressor.prompt.llmlingua_baseline import LongLLMLinguaCompressor

    pc = LongLLMLinguaCompressor.from_pretrained(tiny_llama_dir)
    paragraphs = [f"Paragraph {i}. " + ENGLISH for i in range(6)]
    assert pc.documents("\n\n".join(paragraphs) + "\n\n \n\n") == paragraphs
    question = "When does the library open?"
    result = pc.compress("\n\n".join(paragraphs), rate=0.3, question=question)
    assert result.method == "longllmlingua" and result.tokens_out < result.tokens_in
    assert result.text.endswith(question)
    with pytest.raises(UserError, match="give a question"):
        pc.compress("\n\n".join(paragraphs), rate=0.3)


def test_artifacts_are_written_inside_the_output_only(tmp_path):
    from compressor.export.writer import write_artifacts

    written = write_artifacts({"a.json": ({"x": 1}, True), "b.png": (b"\x89PNG", False), "c.txt": ("한국어", True)},
                              tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in written] == ["model/a.json", "b.png", "model/c.txt"]
    assert json.loads((tmp_path / "model" / "a.json").read_text()) == {"x": 1}
    assert (tmp_path / "model" / "c.txt").read_text() == "한국어"
    for bad in ("../escape.json", "/abs.json"):
        with pytest.raises(ValueError, match="plain relative path"):
            write_artifacts({bad: ({}, True)}, tmp_path)
