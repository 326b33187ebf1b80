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


def assert_one_line_error(code: int, err: str) -> None:
    """A user error as the CLI must report one: exit 2, one `error: ` line (besides progress lines), no traceback."""
    err = "".join(line for line in err.splitlines(keepends=True) if not line.startswith("• "))  # progress
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
