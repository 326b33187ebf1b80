"""Run the `compressor` entry point in-process and capture its exit code and output (tests only)."""

import sys


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    from compressor.cli.app import main

    monkeypatch.setattr(sys, "argv", ["compressor", *args])
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code or 0
    out, err = capsys.readouterr()
    return code, out, err
