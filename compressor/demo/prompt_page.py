"""Page: compress a prompt with a folder's pre-compressor (or a baseline) and see which words were kept."""

import threading
import time

import streamlit as st

from compressor.demo import prompt_view as view
from compressor.demo.errors import shown_in_page
from compressor.demo.folders import given_folders
from compressor.prompt.compressor import decode_prompt
from compressor.prompt.html import STYLE, kept_words_html
from compressor.prompt.methods import METHODS


@st.cache_resource(show_spinner=False, max_entries=4)
def cached_compressor(folder: str, method: str, spec_version: float):
    """One compressor per (folder, method, evaluator heads): loaded once, shared by every session; with a lock,
    since sessions run in threads and a fast tokenizer refuses concurrent use ("Already borrowed")."""
    started = time.perf_counter()
    return view.load(folder, method), time.perf_counter() - started, threading.Lock()


@st.cache_resource(show_spinner=False, max_entries=2)
def cached_answerer(folder: str):
    return view.load_answerer(folder), threading.Lock()


def choose_folder() -> view.FolderChoice:
    choices, problems = view.folder_choices(given_folders())
    for problem in problems:
        st.warning(problem)
    labels = [c.label for c in choices]
    label = st.selectbox("Folder with the pre-compressor", labels, key="prompt_folder")
    choice = choices[labels.index(label)]
    if choice.path is None:
        st.info("The bundled model has no evaluator heads yet: discover them once (9 needle probes, about a "
                "minute on 2 CPU cores), or use a baseline method meanwhile.")
        if st.button("Discover evaluator heads for the bundled model", key="prompt_discover"):
            with shown_in_page(), st.status("Discovering evaluator heads…", expanded=True) as status:
                view.discover_bundled(progress=st.write)
                status.update(label="Evaluator heads discovered", state="complete")
                st.rerun()
    return choice


def read_prompt() -> str:
    uploaded = st.file_uploader("…or upload a text file", type=["txt", "md"], key="prompt_file")
    if uploaded is not None:
        return decode_prompt(uploaded.name, uploaded.getvalue())
    return st.session_state.get("prompt_text", "")


def show_compression(result) -> None:
    counts = st.columns(4)
    counts[0].metric("tokens in", f"{result.tokens_in:,}")
    counts[1].metric("tokens out", f"{result.tokens_out:,}", f"{result.ratio:.1%} kept", delta_color="off")
    counts[2].metric("budget", f"{result.budget:,}")
    counts[3].metric("compression", f"{result.seconds:.2f} s")
    st.caption(f"{result.method}: kept words highlighted (darker = higher score), dropped words struck out.")
    with st.container(height=420, key="prompt_highlight"):
        st.html(f"<style>{STYLE}</style>{kept_words_html(result)}")
    # a text area, not st.code: its syntax highlighter cost 0.3 s of page time on a 2,000-token prompt
    st.text_area("Compressed prompt (what to send)", result.text, height=180)


def show_answers(folder, result) -> None:
    if not st.button("Answer both: the model's reply to the full and to the compressed prompt", key="prompt_answer"):
        return
    with shown_in_page(), st.spinner("Generating (greedy, 48 tokens each)…"):
        (model, tokenizer), lock = cached_answerer(str(folder))
        sides = st.columns(2)
        for side, (title, prompt) in zip(sides, (("full prompt", result.source), ("compressed prompt", result.text))):
            with lock:
                text, tokens, seconds = view.answer(model, tokenizer, prompt)
            side.markdown(f"**{title}** ({tokens:,} prompt tokens, {seconds:.2f} s)")
            side.text(text or "(empty)")


def page() -> None:
    st.title("Prompt compressor")
    choice = choose_folder()
    method = st.segmented_control("Method", METHODS, default="ehpc" if choice.ehpc else "ends",
                                  key="prompt_method") or "ehpc"
    rate = st.slider("Share of tokens to keep", 0.05, 1.0, 0.25, 0.05, key="prompt_rate")
    passages = st.checkbox("Coarse passages first (rank paragraphs, then words inside)", key="prompt_passages",
                           disabled=method not in view.PASSAGE_METHODS)
    st.text_area("Prompt (context)", height=220, key="prompt_text")
    question = st.text_input("Question (kept whole, steers the scores)", key="prompt_question")
    prompt = None
    with shown_in_page():
        prompt = read_prompt()
    problem = view.method_problem(choice, method)
    if problem:
        st.error(problem)
    if st.button("Compress", type="primary", key="prompt_compress", disabled=bool(problem)):
        st.session_state.pop("compression", None)
        with shown_in_page(), st.spinner("Compressing…"):
            folder = view.model_folder(choice)
            compressor, load_s, lock = cached_compressor(str(folder), method, view.spec_version(folder))
            with lock:
                result = view.compress(compressor, prompt or "", question, rate,
                                       passages and method in view.PASSAGE_METHODS)
            st.session_state["compression"] = (str(folder), result)
            st.caption(f"{method} scorer for {folder}: loaded once in {load_s:.1f} s, cached for every session")
    if "compression" in st.session_state:
        folder, result = st.session_state["compression"]
        show_compression(result)
        show_answers(folder, result)


page()
