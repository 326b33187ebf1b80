"""The demo's prompt-compressor page: its logic (prompt_view) and its flow in Streamlit's AppTest (headless)."""

import os
from pathlib import Path

import pytest

from compressor.core.errors import UserError
from compressor.demo import prompt_view as view
from compressor.demo.folders import FOLDERS_ENV
from compressor.prompt.compressor import PromptCompressor, decode_prompt
from test_prompt import ehpc_dir  # noqa: F401  (a fixture: the tiny Llama with a prompt_compressor.json)

PAGE = str(Path(__file__).resolve().parents[1] / "compressor" / "demo" / "prompt_page.py")
CONTEXT = ("서울의 비밀 코드는 4817입니다. The pass key is 71432. " + "The grass is green and the sky is blue. " * 12
           + "\n\n" + "대한민국은 민주공화국이다. " * 8)
QUESTION = "What is the pass key?"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private COMPRESSOR_HOME: the bundled model's discovered heads (if any) are not the user's."""
    monkeypatch.setenv("COMPRESSOR_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def app(monkeypatch, *folders):
    from streamlit.testing.v1 import AppTest

    import streamlit as st

    st.cache_resource.clear()
    monkeypatch.setenv(FOLDERS_ENV, os.pathsep.join(str(f) for f in folders))
    return AppTest.from_file(PAGE, default_timeout=60).run()


def compressed_text(at) -> str:
    return next(t.value for t in at.text_area if t.label.startswith("Compressed prompt"))


def test_folder_choices_name_what_each_folder_can_do(ehpc_dir, tiny_llama_dir, tmp_path, home):  # noqa: F811
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text("{}")
    choices, problems = view.folder_choices([ehpc_dir, tiny_llama_dir, tmp_path / "missing", sweep, tmp_path])
    assert [c.ehpc for c in choices] == [True, False, False]
    assert choices[-1].path is None and "bundled" in choices[-1].label  # the bundled model, heads not discovered
    assert len(problems) == 2 and "missing: no such folder" in problems[0] and "neither an output" in problems[1]
    assert "compressor prompt discover" in view.method_problem(choices[1], "ehpc")
    assert view.method_problem(choices[0], "ehpc") is None and view.method_problem(choices[1], "ends") is None


def test_uploads_must_be_utf8_text():
    assert decode_prompt("a.txt", "한국어 text".encode()) == "한국어 text"
    with pytest.raises(UserError, match=r"a.txt: not UTF-8 text \(byte 1\)"):
        decode_prompt("a.txt", b"a\xff")


def test_compress_flow_shows_counts_and_highlighted_words_and_loads_the_scorer_once(
        ehpc_dir, monkeypatch, home):  # noqa: F811
    loads = []
    real_load = view.load
    monkeypatch.setattr(view, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    at = app(monkeypatch, ehpc_dir)
    assert not at.exception
    assert at.selectbox(key="prompt_folder").value.startswith(str(ehpc_dir))
    assert at.segmented_control(key="prompt_method").value == "ehpc"
    at.text_area(key="prompt_text").input(CONTEXT)
    at.text_input(key="prompt_question").input(QUESTION)
    at.slider(key="prompt_rate").set_value(0.3)
    at.button(key="prompt_compress").click().run()
    assert not at.exception and not at.error

    expected = PromptCompressor.from_pretrained(ehpc_dir).compress(CONTEXT, rate=0.3, question=QUESTION)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["tokens in"] == f"{expected.tokens_in:,}" and metrics["tokens out"] == f"{expected.tokens_out:,}"
    assert metrics["budget"] == f"{expected.budget:,}"
    page = at.get("html")[0].proto.body
    kept = [s for s, e in expected.kept_spans]
    assert page.count('<span class="k"') == len(kept) and '<span class="d"' in page
    assert "서울의" in page or "대한민국은" in page  # Hangul arrives whole in the page
    assert compressed_text(at) == expected.text

    at.slider(key="prompt_rate").set_value(0.5)
    at.button(key="prompt_compress").click().run()
    assert not at.exception and {m.label: m.value for m in at.metric}["budget"] != metrics["budget"]
    assert len(loads) == 1  # the scorer was loaded once for both interactions


def test_answers_side_by_side(ehpc_dir, monkeypatch, home):  # noqa: F811
    at = app(monkeypatch, ehpc_dir)
    at.text_area(key="prompt_text").input(CONTEXT)
    at.text_input(key="prompt_question").input(QUESTION)
    at.button(key="prompt_compress").click().run()
    at.button(key="prompt_answer").click().run()
    assert not at.exception and not at.error
    titles = [m.value for m in at.markdown if m.value.startswith("**")]
    assert [t.split("**")[1] for t in titles] == ["full prompt", "compressed prompt"]


def test_errors_are_shown_in_the_page(ehpc_dir, tiny_llama_dir, tmp_path, monkeypatch, home):  # noqa: F811
    at = app(monkeypatch, ehpc_dir, tmp_path / "nowhere")
    assert any("nowhere: no such folder" in w.value for w in at.warning)
    at.text_area(key="prompt_text").input("word " * 3000)  # past the tiny model's 2,048 positions
    at.button(key="prompt_compress").click().run()
    assert not at.exception and any("exceed the scorer's 2,048 positions" in e.value for e in at.error)

    at.text_area(key="prompt_text").input("")
    at.button(key="prompt_compress").click().run()
    assert any("empty prompt" in e.value for e in at.error)

    at.file_uploader(key="prompt_file").set_value(("bad.txt", b"\xff\xfe", "text/plain"))
    at.run()
    assert not at.exception and any("bad.txt: not UTF-8 text" in e.value for e in at.error)

    at = app(monkeypatch, tiny_llama_dir)  # no evaluator heads: EHPC is refused, a baseline runs
    at.segmented_control(key="prompt_method").set_value("ehpc").run()
    assert any("compressor prompt discover" in e.value for e in at.error)
    assert at.button(key="prompt_compress").disabled


def test_uploaded_korean_prompt_is_compressed(ehpc_dir, monkeypatch, home):  # noqa: F811
    at = app(monkeypatch, ehpc_dir)
    at.file_uploader(key="prompt_file").set_value(("ko.txt", CONTEXT.encode(), "text/plain"))
    at.run()
    at.button(key="prompt_compress").click().run()
    assert not at.exception and not at.error
    assert "\ufffd" not in compressed_text(at) and at.metric[0].value != "0"


def test_bundled_model_heads_are_discovered_once_from_the_page(tiny_llama_dir, monkeypatch, home):
    import compressor.models.builtin as builtin

    monkeypatch.setattr(builtin, "materialize_builtin", lambda name: tiny_llama_dir)  # the tiny model stands in
    monkeypatch.chdir(home.parent)  # no folder given and no ./out: the bundled model only
    at = app(monkeypatch)
    assert at.selectbox(key="prompt_folder").value.startswith("bundled") and at.info
    at.text_area(key="prompt_text").input(CONTEXT)
    at.button(key="prompt_compress").click().run()  # a baseline (ends) runs before any discovery
    assert not at.exception and not at.error and at.metric
    at.button(key="prompt_discover").click().run()
    assert not at.exception and not at.error
    assert "EHPC heads" in at.selectbox(key="prompt_folder").value and not at.info
    assert (view.bundled_ehpc_folder() / "model" / "prompt_compressor.json").is_file()
    at.segmented_control(key="prompt_method").set_value("ehpc")
    at.button(key="prompt_compress").click().run()
    assert not at.exception and not at.error and at.metric[0].value != "0"


def test_every_baseline_runs_on_the_page(tiny_llama_dir, monkeypatch, home):
    methods = ["random", "ends"] + (["llmlingua", "longllmlingua"] if view.method_problem(
        view.FolderChoice("", tiny_llama_dir, False), "llmlingua") is None else [])
    at = app(monkeypatch, tiny_llama_dir)
    at.text_area(key="prompt_text").input(CONTEXT)
    at.text_input(key="prompt_question").input(QUESTION)
    for method in methods:
        at.segmented_control(key="prompt_method").set_value(method)
        at.button(key="prompt_compress").click().run()
        assert not at.exception and not at.error, method
        assert at.get("html") and QUESTION in compressed_text(at), method
