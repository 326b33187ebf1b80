"""`compressor report DIR...`: outputs side by side, best Score first; a sweep folder shows its trials."""

from pathlib import Path

import click

from compressor.cli.output import emit, stderr_console


@click.command(name="report")
@click.argument("output_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON on stdout.")
def report_command(output_dirs, as_json):
    """Tabulate several outputs side by side, sorted by Score (from each report.json); a sweep folder (with
    sweep.json) lists its trials, best first.

    \b
    Example:
      compressor report out/*
      compressor report out/sweeps/drop-w8a8
    """
    from compressor.reports.report import comparison_rows, comparison_table
    from compressor.reports.sweep import SWEEP_JSON, read_sweep_document, sweep_rows, sweep_table

    sweeps = {folder: read_sweep_document(folder) for folder in output_dirs if (Path(folder) / SWEEP_JSON).is_file()}
    outputs = [folder for folder in output_dirs if folder not in sweeps]
    rows = comparison_rows(outputs) if outputs else []
    result = {"rows": rows, **({"sweeps": {str(folder): sweep_rows(doc) for folder, doc in sweeps.items()}}
                               if sweeps else {})}

    def show(_):
        console = stderr_console()
        for document in sweeps.values():
            console.print(sweep_table(document))
        if rows:
            console.print(comparison_table(rows))

    emit(result, as_json, show)

