"""What every command shares to show its work: progress on stderr, JSON or a rich table on stdout."""

import json

import click


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def progress_printer(enabled: bool):
    console = stderr_console()

    def show(message: str) -> None:
        if enabled:
            console.print(f"[dim]•[/dim] {message}")

    return show


def emit(result: dict, as_json: bool, render) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        render(result)
