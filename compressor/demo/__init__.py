"""`compressor demo`: a Streamlit app to look at compression (the prompt compressor, the outputs side by side).

app.py is the script Streamlit runs; each page is its own script (prompt_page.py, outputs_page.py) over
plain functions that hold the logic (prompt_view.py, outputs_view.py), so the logic is tested without a
browser and the pages with Streamlit's AppTest.
"""
