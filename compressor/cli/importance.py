"""`compressor importance MODEL`: per-layer importance table, importance.json and heatmaps."""

from pathlib import Path

import click

from compressor.cli.output import emit, progress_printer, stderr_console


@click.command()
@click.argument("model")
@click.option("--out", "out_dir", type=click.Path(path_type=Path),
              help="Folder for importance.json and importance.png (default: MODEL if it is an output folder, "
                   "else out/importance-<model>).")
@click.option("--samples", type=click.IntRange(1), default=32, show_default=True, help="Calibration windows.")
@click.option("--seq-len", type=click.IntRange(2), default=256, show_default=True, help="Tokens per window.")
@click.option("--split", default="calibration", show_default=True, help="Corpus split (eval/data/corpus).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--corpus", type=click.Choice(["en", "ko", "mixed"]), default="en", show_default=True,
              help="Calibration text: English docstrings, Korean statutes and bills, or both interleaved.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON on stdout.")
def importance(model, out_dir, samples, seq_len, split, seed, corpus, device, as_json):
    """Score MODEL's layers, heads, KV groups, MLP neurons and hidden channels on calibration text.

    MODEL is an output folder, a model folder, or builtin:NAME. Prints a per-layer table and writes
    importance.json and a heatmap importance.png (Minitron activation importance, arXiv 2407.14679).

    \b
    Example:
      compressor importance builtin:smollm2-135m --samples 16
      compressor importance out/prune-heads --json
    """
    from pydantic import ValidationError

    from compressor.core.errors import UserError
    from compressor.core.validation import format_validation_error
    from compressor.data.calibration import CalibrationSpec
    from compressor.importance import rich_table, score_model

    try:
        spec = CalibrationSpec(split=split, samples=samples, seq_len=seq_len, seed=seed, corpus=corpus)
    except ValidationError as error:
        raise UserError(format_validation_error("options", error)) from None
    result = score_model(model, spec, out_dir, device, progress_printer(not as_json))

    def render(res):
        console = stderr_console()
        console.print(rich_table(res["layers"], f"{model}: importance on {res['scores']['windows']} windows x {seq_len} tokens"))
        ch = res["channels"]
        console.print(f"hidden channels ({ch['hidden_size']}): weakest {ch['weakest']}, strongest {ch['strongest']}; "
                      f"the top half holds {ch['top_half_share']:.1%} of the importance")
        console.print(f"wrote {res['json']} and {res['png']}")

    emit(result, as_json, render)
