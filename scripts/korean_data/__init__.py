"""The pieces of scripts/make_korean_data.py, one output or source each."""
