"""`compressor report DIR...`: outputs side by side, best Score first."""

from pathlib import Path

import click

from compressor.cli.output import emit, stderr_console


@click.command(name="report")
@click.argument("output_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON on stdout.")
def report_command(output_dirs, as_json):
    """Tabulate several outputs side by side, sorted by Score (from each report.json).

    \b
    Example:
      compressor report out/*
    """
    from compressor.reports.report import comparison_rows, comparison_table

    rows = comparison_rows(output_dirs)
    emit({"rows": rows}, as_json, lambda r: stderr_console().print(comparison_table(r["rows"])))
