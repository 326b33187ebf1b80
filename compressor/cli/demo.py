"""`compressor demo [OUT_DIR ...]`: the web app (Streamlit) to look at compression."""

from pathlib import Path

import click


@click.command(name="demo")
@click.argument("folders", nargs=-1, type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=int, default=8501, show_default=True, help="Port to listen on (0: any free one).")
def demo(folders, host, port):
    """Start the web app: the prompt compressor (kept words highlighted, answers side by side) and the
    outputs (table by Score, Perf vs ms/token with Score iso-lines, each report, `check` status).

    FOLDERS are outputs of `compressor apply` and sweep folders (default: what ./out holds). Open the URL it
    prints; Ctrl-C stops it.

    \b
    Example:
      compressor demo                         # the outputs under ./out, and the bundled model
      compressor demo out/fp16 out/ehpc out/sweeps/drop-w8a8 --port 8600
    """
    from compressor.demo.launch import run

    if not 0 <= port <= 65535:
        raise click.BadParameter(f"{port}: a port is 0..65535", param_hint="--port")
    where = f"http://{host}:{port}" if port else f"http://{host}:(a free port)"
    click.echo(f"compressor demo: starting on {where} (Ctrl-C stops it)", err=True)
    run(folders, host, port)
