"""The Streamlit script `compressor demo` runs: two pages, the prompt compressor and the outputs."""

from pathlib import Path

import streamlit as st

HERE = Path(__file__).parent

st.set_page_config(page_title="compressor demo", layout="wide")
page = st.navigation([st.Page(HERE / "prompt_page.py", title="Prompt compressor", default=True),
                      st.Page(HERE / "outputs_page.py", title="Outputs")])
page.run()
