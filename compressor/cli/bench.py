"""`compressor bench DIR`: time per output token (greedy, fixed lengths, warm-up, median of runs)."""

from pathlib import Path

import click

from compressor.cli.options import eval_spec_from_options, press_options
from compressor.cli.output import emit, stderr_console


@click.command()
@click.argument("output_dir", type=click.Path(path_type=Path))
@click.option("--runtime", type=click.Choice(["torch", "vllm"]), default="torch", show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N (torch runtime).")
@click.option("--prompt-tokens", type=int, default=256, show_default=True)
@click.option("--new-tokens", type=int, default=128, show_default=True)
@click.option("--runs", type=int, default=5, show_default=True, help="Timed runs after warm-up (median and spread).")
@click.option("--warmup", type=int, default=1, show_default=True)
@click.option("--batch-sizes", default="1,8", show_default=True, help="Comma-separated batch sizes.")
@press_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def bench(output_dir, runtime, device, prompt_tokens, new_tokens, runs, warmup, batch_sizes, as_json, **press):
    """Time per output token of OUTPUT_DIR/model (greedy, fixed prompt/output length, warm-up, median of runs).

    \b
    Example:
      compressor bench out/fp16
      compressor bench out/fp16 --runtime vllm --batch-sizes 1,8 --json
      compressor bench out/fp16 --kv-press knorm --kv-ratio 0.5 --long-context 4096
    """
    from compressor.core.layout import resolve
    from compressor.evaluate.bench import bench as run_bench
    from compressor.models.sources import pick_device

    spec = eval_spec_from_options(False, runtime, "default", None, 8, prompt_tokens, new_tokens, runs, batch_sizes,
                                  warmup=warmup, **press)
    from compressor.models.checkpoint import check_model_folder

    folder = resolve(output_dir).model
    check_model_folder(folder)
    result = run_bench(folder, spec, pick_device(device))

    def render(res):
        from rich.table import Table

        table = Table(title=f"{folder} on {res['runtime']} ({res['device']}), {prompt_tokens}+{new_tokens} tokens")
        for column in ("batch", "ms/token median", "min", "max", "tokens/s"):
            table.add_column(column, justify="right")
        for batch, b in res["batches"].items():
            table.add_row(batch, f"{b['tpt_ms_median']:.2f}", f"{b['tpt_ms_min']:.2f}", f"{b['tpt_ms_max']:.2f}",
                          f"{b['output_tokens_per_s']:.1f}")
        console = stderr_console()
        console.print(table)
        if res.get("without_press"):
            for batch, b in res["without_press"]["batches"].items():
                console.print(f"without the press, batch {batch}: {b['tpt_ms_median']:.2f} ms/token")
        if res.get("long_context_points"):
            from compressor.reports.long_context import long_context_lines

            console.print("\n".join(long_context_lines({"model": res})))
        if res.get("peak_rss_mb"):
            console.print(f"peak RSS {res['peak_rss_mb']:.0f} MB")

    emit(result, as_json, render)
