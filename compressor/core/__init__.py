"""The floor every other layer stands on: errors, paths, package data, output layout, atomic writes.

Nothing here imports from the rest of compressor (import-linter's layers contract, pyproject.toml).
"""
