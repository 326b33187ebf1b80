"""The `compressor` command line: parse, call, render. One module per command group; no logic here."""

import os
import sys
import traceback

import click

from compressor.cli.apply import apply
from compressor.cli.bench import bench
from compressor.cli.check import check
from compressor.cli.demo import demo
from compressor.cli.evaluate import evaluate
from compressor.cli.export import export
from compressor.cli.importance import importance
from compressor.cli.package import package
from compressor.cli.plan import plan
from compressor.cli.prompt import prompt_group
from compressor.cli.recipes import recipes
from compressor.cli.report import report_command
from compressor.cli.sweep import sweep, sweep_baseline
from compressor.core.errors import UserError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="compressor")
def cli():
    """Compress a causal LM with a YAML recipe, judge it, and export what vLLM loads.

    Add --debug anywhere (or set COMPRESSOR_DEBUG=1) to see the traceback behind an error.

    \b
    compressor apply recipes/fp16.yaml           # the bundled SmolLM2-135M -> out/fp16/
    compressor eval out/fp16                     # perplexity, time/token, Score vs source
    compressor package out/fp16 --target export/targets/lg-aimers.yaml
    """


for command in (apply, plan, evaluate, package, bench, report_command, recipes, check, importance, export, prompt_group,
                sweep, sweep_baseline, demo):
    cli.add_command(command)


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # so SIGTERM also unwinds and removes half-written temp folders


def _debug_requested(args: list[str]) -> tuple[bool, list[str]]:
    """`--debug` anywhere on the command line (or COMPRESSOR_DEBUG=1): show tracebacks; the flag is removed."""
    debug = os.environ.get("COMPRESSOR_DEBUG", "") not in ("", "0") or "--debug" in args
    return debug, [a for a in args if a != "--debug"]


MESSAGE_LIMIT = 600  # characters: a 5,000-character value is cut, not echoed whole


def _fail(message: str, debug: bool, code: int) -> None:
    if debug:
        traceback.print_exc()
    line = " ".join(str(message).split())
    if len(line) > MESSAGE_LIMIT:
        line = f"{line[:MESSAGE_LIMIT]}... ({len(line) - MESSAGE_LIMIT} more characters)"
    click.echo(f"error: {line}", err=True)
    sys.exit(code)


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _interrupt)
    debug, args = _debug_requested(sys.argv[1:])
    try:
        cli.main(args=args, prog_name="compressor", standalone_mode=False)
    except UserError as error:
        _fail(str(error), debug, getattr(error, "exit_code", 2))
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        click.echo("interrupted", err=True)
        sys.exit(130)
    except OSError as error:  # a full disk, a permission, a vanished file: the path and what the system said
        where = f"{error.filename}: " if error.filename else ""
        _fail(f"{where}{error.strerror or error}", debug, 1)
    except Exception as error:  # a bug of ours: one line here, the traceback with --debug
        _fail(f"internal error, {type(error).__name__}: {' '.join(str(error).split())[:300]} "
              f"(run again with --debug for the traceback)", debug, 1)


if __name__ == "__main__":
    main()
