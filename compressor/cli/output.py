"""What every command shares to show its work: progress on stderr, JSON or a rich table on stdout."""

import json
import sys
from contextlib import contextmanager

import click


def stderr_console():
    """A console on stderr: the terminal's width, or wide (no cutting) when stderr is piped to a file."""
    from rich.console import Console

    return Console(stderr=True, width=None if sys.stderr.isatty() else 200)


class ProgressPrinter:
    """`progress(message)` prints a phase line; `progress.counter(label, total)` shows a bar with done / total,
    elapsed time and an ETA (rich), removed when done and replaced by one line with the count and time."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.console = stderr_console()
        self.live = False  # rich shows one live display at a time: a counter inside a counter stays silent

    def __call__(self, message: str) -> None:
        if self.enabled:
            self.console.print(f"[dim]•[/dim] {message}")

    @contextmanager
    def counter(self, label: str, total: int | None, unit: str = ""):
        if not self.enabled or self.live:
            yield lambda n=1: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        columns = [TextColumn("[dim]•[/dim] {task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                   TextColumn(unit), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
        self.live = True
        try:
            # a live bar on a terminal; piped output gets the summary line only
            with Progress(*columns, console=self.console, transient=True,
                          disable=not self.console.is_terminal) as bars:
                task = bars.add_task(label, total=total)
                yield lambda n=1: bars.advance(task, n)
                done = bars.tasks[0]
        finally:
            self.live = False
        elapsed = done.finished_time if done.finished_time is not None else done.elapsed
        total_text = f"/{_count(done.total)}" if done.total is not None else ""
        self.console.print(f"[dim]•[/dim] {label}: {_count(done.completed)}{total_text}{' ' + unit if unit else ''} "
                           f"in {elapsed or 0:.1f} s")


def _count(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() or value >= 10 else f"{value:.1f}"


def progress_printer(enabled: bool) -> ProgressPrinter:
    return ProgressPrinter(enabled)


def emit(result: dict, as_json: bool, render) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        render(result)
