"""KV presses at evaluation time (kvpress 0.5.5): the cache compressor, the press loop, long context, errors."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from cli_runner import run_cli
from compressor.core.errors import UserError
from compressor.evaluate.kv.press import _ShiftedRotary, build_press, check_press_for_model
from compressor.evaluate.kv.runtime import PressRuntime
from compressor.evaluate.kv.spec import PRESSES, KVPressSpec, LongContextSpec
from compressor.evaluate.kv.long_context import ablation_points, measure_long_context, measure_points
from compressor.models.sources import load_model
from compressor.recipe import load_recipe, parse_recipe

RATIO_PRESSES = [name for name in PRESSES if name != "streaming_llm"]


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return load_model(tiny_llama_dir, torch.device("cpu"))


@pytest.fixture(scope="module")
def ids():
    return torch.randint(3, 259, (1, 384), generator=torch.Generator().manual_seed(0))


def chunked(model, spec, ids, chunk=128):
    runtime = PressRuntime(model, spec)
    with runtime.session():
        cache = runtime.new_cache()
        logits = torch.cat([runtime.forward(ids[:, s:s + chunk], cache, all_logits=True)
                            for s in range(0, ids.shape[1], chunk)], dim=1)
    return logits, cache, runtime


@pytest.mark.parametrize("spec", [KVPressSpec(press=n, ratio=0.0) for n in PRESSES]
                         + [KVPressSpec(press="streaming_llm", window=1000)], ids=lambda s: s.label())
def test_ratio_zero_equals_no_press(tiny, ids, spec):
    model, _ = tiny
    with torch.inference_mode():
        reference = model(ids).logits
    logits, cache, _ = chunked(model, spec, ids)
    assert torch.allclose(logits, reference, atol=1e-4), (logits - reference).abs().max()
    assert cache.get_seq_length() == ids.shape[1]


@pytest.mark.parametrize("name", RATIO_PRESSES)
def test_cache_shrinks_to_the_requested_size(tiny, ids, name):
    model, _ = tiny
    with torch.inference_mode():
        reference = model(ids).logits
    logits, cache, runtime = chunked(model, KVPressSpec(press=name, ratio=0.5), ids)
    assert [layer.keys.shape[2] for layer in cache.layers] == [192] * len(cache.layers)  # int(384 · 0.5)
    assert all(layer.values.shape[2] == 192 for layer in cache.layers)
    assert torch.allclose(logits[:, :128], reference[:, :128], atol=1e-4)  # the first chunk sees no compression
    assert not torch.allclose(logits[:, 128:], reference[:, 128:], atol=1e-2)  # later chunks see the press
    # ratio presses leave decoded tokens alone (kvpress compresses prefill passes only)
    with runtime.session():
        runtime.compressor.state.seen = ids.shape[1]
        runtime.forward(ids[:, :1], cache)
    assert cache.get_seq_length() == 193


def test_streaming_llm_keeps_n_sink_first_positions_and_the_window(tiny, ids):
    model, _ = tiny
    _, full, _ = chunked(model, KVPressSpec(), ids)
    n_sink, window = 4, 100
    _, cache, runtime = chunked(model, KVPressSpec(press="streaming_llm", n_sink=n_sink, window=window), ids)
    for kept, ref in zip(cache.layers, full.layers):
        assert kept.keys.shape[2] == n_sink + window
        # the sinks keep their keys (positions 0..n_sink-1 are unchanged by re-rotation) and values
        assert torch.allclose(kept.keys[:, :, :n_sink], ref.keys[:, :, :n_sink], atol=1e-5)
        assert torch.equal(kept.values[:, :, :n_sink], ref.values[:, :, :n_sink])
    # the window holds the latest positions, in order: layer 0's values depend on the tokens only
    # (deeper layers' depend on what attention saw, which the press changed)
    assert torch.equal(cache.layers[0].values[:, :, n_sink:], full.layers[0].values[:, :, -window:])
    # the cache stays at n_sink + window while decoding, and positions restart within the cache
    with runtime.session():
        for token in ids[0, :3]:
            runtime.forward(token.view(1, 1), cache)
    assert cache.get_seq_length() == n_sink + window


def test_the_press_loop_decodes_like_generate(tiny, ids):
    model, _ = tiny
    prompt = ids[:, :40]
    with torch.inference_mode():
        expected = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12,
                                  min_new_tokens=12, do_sample=False, pad_token_id=2)[:, 40:]
    runtime = PressRuntime(model, None)
    with runtime.session():
        got = runtime.greedy(prompt, 12)
    assert torch.equal(got, expected)


def test_long_context_ppl_without_press_is_the_teacher_forced_ppl(tiny, ids, monkeypatch):
    model, tokenizer = tiny
    doc = ids[0].tolist()
    with torch.inference_mode():
        logits = model(ids).logits[0]
    expected = math.exp(F.cross_entropy(logits[:-1], ids[0, 1:]).item())
    spec = LongContextSpec(tokens=384, chunk=100, decode_tokens=4)
    result = measure_long_context(model, tokenizer, None, spec, doc)
    assert result["ppl"] == pytest.approx(expected, rel=1e-4)
    assert result["cache_positions_after_prefill"] == 384 and result["cache_positions_after_decode"] == 388

    monkeypatch.setattr("compressor.evaluate.kv.long_context.long_document_ids", lambda tok, n: doc[:n])
    points = measure_points(model, tokenizer, [KVPressSpec(), KVPressSpec(press="knorm", ratio=0.5),
                                               KVPressSpec(press="streaming_llm", n_sink=4, window=60)],
                            LongContextSpec(tokens=384, chunk=128, decode_tokens=3))
    none, knorm, streaming = points
    assert knorm["cache_positions_after_prefill"] == 192 and streaming["cache_positions_after_prefill"] == 64
    assert knorm["kv_cache_ratio"] < 0.8 and streaming["kv_cache_ratio"] < 0.5  # peak includes one chunk
    assert none["ppl_increase"] == 0 and knorm["ppl"] != none["ppl"]


def test_expected_attention_sees_the_chunk_position():
    class Rotary(torch.nn.Module):
        inv_freq = torch.ones(2)

        def forward(self, x, position_ids):
            return position_ids * 2

    shifted = _ShiftedRotary(Rotary())
    shifted.offset = 300
    assert torch.equal(shifted(None, torch.arange(3)), torch.tensor([600, 602, 604]))
    assert torch.equal(shifted.inv_freq, torch.ones(2))


@pytest.mark.parametrize("bad, message", [
    ({"press": "snapkv2"}, "eval.kv_press: unknown press 'snapkv2' (known: none, streaming_llm, snapkv, knorm"),
    ({"press": "knorm", "ratio": 1.0}, "eval.kv_press: ratio must be in [0, 1), got 1.0"),
    ({"press": "knorm", "ratio": -0.1}, "eval.kv_press: ratio must be in [0, 1), got -0.1"),
    ({"press": "knorm", "ratio": 0.5, "window": 64}, "window is a streaming_llm parameter"),
])
def test_bad_press_in_a_recipe_is_one_line(bad, message):
    with pytest.raises(UserError) as info:
        parse_recipe({"name": "x", "eval": {"kv_press": bad}}, "r.yaml")
    assert str(info.value).startswith("r.yaml: ") and message in str(info.value) and "\n" not in str(info.value)


def test_press_checks_before_loading(tiny_exaone4_dir, tiny_llama_dir):
    from transformers import AutoConfig

    with pytest.raises(UserError, match=r"has sliding-window layers"):
        check_press_for_model(KVPressSpec(press="knorm", ratio=0.5), AutoConfig.from_pretrained(tiny_exaone4_dir))
    with pytest.raises(UserError, match=r"knorm \(KnormPress\) keeps no sink tokens"):
        build_press(KVPressSpec(press="knorm", ratio=0.5, n_sink=2))
    with pytest.raises(UserError, match=r"snapkv \(SnapKVPress\) has no option 'windw'"):
        build_press(KVPressSpec(press="snapkv", ratio=0.5, options={"windw": 3}))
    recipe = {"name": "x", "model": str(tiny_llama_dir), "eval": {"kv_press": {"press": "snapkv", "ratio": 0.5},
                                                                   "long_context": {"tokens": 4096, "chunk": 32}}}
    from compressor.recipe import check_against_config

    with pytest.raises(UserError, match=r"r.yaml: eval.long_context.chunk: 32 is too short for snapkv"):
        check_against_config(parse_recipe(recipe, "r.yaml"), AutoConfig.from_pretrained(tiny_llama_dir), "r.yaml")
    recipe["eval"]["long_context"]["chunk"] = 128
    with pytest.raises(UserError, match=r"long_context.tokens: 4096 \+ 32 decoded tokens exceed the model's 2048"):
        check_against_config(parse_recipe(recipe, "r.yaml"), AutoConfig.from_pretrained(tiny_llama_dir), "r.yaml")


def test_cli_refuses_bad_press_before_work(monkeypatch, capsys, tiny_llama_dir):
    def no_loading(*args, **kwargs):
        raise AssertionError("model loaded before the press was checked")

    monkeypatch.setattr("compressor.models.sources.load_model", no_loading)
    for args, message in ((["--kv-press", "foo"], "unknown press 'foo'"),
                          (["--kv-press", "knorm", "--kv-ratio", "1"], "ratio must be in [0, 1)"),
                          (["--kv-press", "knorm", "--kv-ratio", "0.5", "--runtime", "vllm"],
                           "kv_press applies in the torch runtime only")):
        for command in ("eval", "bench"):
            code, _, err = run_cli(monkeypatch, capsys, command, str(tiny_llama_dir), *args)
            assert code == 2 and "Traceback" not in err, err
            assert err.strip().startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_recipes_reproduce_the_documents():
    from repo import REPO_ROOT

    streaming = load_recipe(REPO_ROOT / "recipes" / "streaming-llm.yaml")
    assert streaming.eval.kv_press.label() == "streaming_llm@4+1024" and streaming.eval.long_context.tokens >= 4096
    points = [p.label() for p in ablation_points(streaming.eval.kv_press, streaming.eval.long_context)]
    assert points[0] == "none" and sum(p.endswith("+1024") for p in points) >= 1
    assert len({p.split("+")[1] for p in points[1:]}) >= 4 and len({p.split("@")[1].split("+")[0] for p in points[1:]}) >= 3
    snapkv = load_recipe(REPO_ROOT / "recipes" / "snapkv.yaml")
    points = [p.label() for p in ablation_points(snapkv.eval.kv_press, snapkv.eval.long_context)]
    assert {"none", "snapkv@0.5", "knorm@0.5", "expected_attention@0.5"} <= set(points)


@pytest.fixture(scope="module")
def press_eval(tmp_path_factory, tiny_llama_dir):
    """One `compressor eval` with a press on a tiny output (shared by the tests below)."""
    import shutil

    out = tmp_path_factory.mktemp("press-eval") / "out"
    shutil.copytree(tiny_llama_dir, out / "model")
    return out


def test_eval_with_a_press_reports_press_rows(monkeypatch, capsys, press_eval):
    out = press_eval
    fast = ["--suite", "quick", "--limit", "2", "--prompt-tokens", "16", "--new-tokens", "3", "--runs", "1",
            "--baseline", str(out / "model")]
    code, stdout, err = run_cli(monkeypatch, capsys, "eval", str(out), *fast, "--kv-press", "knorm",
                                "--kv-ratio", "0.5", "--long-context", "256", "--json")
    assert code == 0, err
    ev = json.loads(stdout)["eval"]
    assert ev["settings"]["kv_press"] == {"press": "knorm", "ratio": 0.5, "n_sink": None, "window": None,
                                          "options": {}}
    assert ev["model"]["kv_press"]["press"] == "knorm" and ev["baseline"]["kv_press"]["press"] == "none"
    assert ev["model"]["long_context"]["cache_positions_after_prefill"] == 128
    assert ev["baseline"]["long_context"]["cache_positions_after_prefill"] == 256
    assert ev["model"]["without_press"]["long_context"]["press"] == "none" and ev["model"]["without_press"]["tpt_ms"] > 0
    code, stdout, err = run_cli(monkeypatch, capsys, "eval", str(out), *fast, "--json")  # the same, no press
    assert code == 0, err
    plain = json.loads(stdout)["eval"]
    assert plain["baseline_key"] != ev["baseline_key"] and "kv_press" not in plain["settings"]
    report = json.loads((out / "report.json").read_text())
    assert set(report["evals"]) == {"torch", "torch+knorm@0.5"}
    assert (out / "long_context-torch_knorm_0.5.png").stat().st_size > 1000
    assert "| knorm@0.5 |" in (out / "report.md").read_text()
    code, stdout, _ = run_cli(monkeypatch, capsys, "report", str(out), "--json")
    assert sorted(r["eval"] for r in json.loads(stdout)["rows"]) == ["torch", "torch+knorm@0.5"]


@pytest.mark.e2e
def test_smollm2_long_context_presses():
    """SmolLM2 on 1,536 real-text tokens: each press keeps what it should, and costs perplexity in a sane range."""
    from compressor.models.sources import resolve_source

    model, tokenizer = load_model(resolve_source("builtin:smollm2-135m").path, torch.device("cpu"))
    points = [KVPressSpec(), KVPressSpec(press="streaming_llm", n_sink=4, window=256),
              KVPressSpec(press="streaming_llm", n_sink=0, window=256), KVPressSpec(press="snapkv", ratio=0.5)]
    none, sinks, no_sinks, snapkv = measure_points(model, tokenizer, points,
                                                   LongContextSpec(tokens=1536, chunk=128, decode_tokens=4))
    print("\n" + ", ".join(f"{p['press']}: ppl {p['ppl']:.2f} (last half {p['ppl_last_half']:.2f}), "
                           f"{p['decode_ms_per_token']:.1f} ms/token" for p in (none, sinks, no_sinks, snapkv)))
    assert 5 < none["ppl"] < 60  # real text, a trained model
    assert sinks["cache_positions_after_prefill"] == 260 and snapkv["cache_positions_after_prefill"] == 768
    assert none["ppl"] < sinks["ppl"] < 2 * none["ppl"] and none["ppl"] < snapkv["ppl"] < 2 * none["ppl"]
    assert sinks["ppl"] < no_sinks["ppl"]  # the attention-sink finding of StreamingLLM
