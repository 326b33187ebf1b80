"""`compressor check DIR --runtime ...`: the deployment gate (the runtime's greedy output vs our own)."""

from pathlib import Path

import click

from compressor.cli.evaluate import given_engine, vllm_engine_options
from compressor.cli.output import emit, progress_printer, stderr_console
from compressor.core.errors import CheckFailed, UserError
from compressor.core.layout import CHECK_JSON, is_output


@click.command()
@click.argument("output_dir", type=click.Path(path_type=Path))
@click.option("--runtime", type=click.Choice(["transformers", "vllm", "onnxruntime"]), required=True,
              help="transformers: stock from_pretrained in a fresh process; vllm: .venv-vllm (or "
                   "$COMPRESSOR_VLLM_PYTHON: the CPU build or a CUDA `vllm`, detected); "
                   "onnxruntime: the ONNX export (DIR/onnx/model.onnx) in plain onnxruntime.")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Pass when the mean share of greedy tokens before the first divergence reaches this.")
@click.option("--max-tokens", type=click.IntRange(1), default=32, show_default=True, help="Greedy tokens per prompt.")
@click.option("--eager", is_flag=True, help="vLLM without torch.compile: about half the engine start; "
                                           "the default (compiled) is how vLLM serves.")
@click.option("--onnx", "onnx_path", type=click.Path(path_type=Path), default=None,
              help="onnxruntime: the .onnx file or folder to check (default: DIR/onnx/model.onnx).")
@click.option("--device", default="auto", show_default=True,
              help="Where the torch reference runs: auto (CUDA when available), cpu, cuda, cuda:N.")
@vllm_engine_options(data_parallel=False)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def check(output_dir, runtime, min_agreement, max_tokens, eager, onnx_path, device, as_json, **engine):
    """Deployment gate: load OUTPUT_DIR/model in RUNTIME and compare its greedy output with this tool's own.

    Fails (exit 2) when the runtime cannot load the folder, tokenizes the prompts differently,
    or its greedy tokens diverge from the tool's own (fp32) reference too early.

    \b
    Example:
      compressor check out/fp16 --runtime transformers
      compressor check out/drop-layers --runtime vllm --min-agreement 0.5 --json
      compressor check out/fp16 --runtime onnxruntime --onnx out/fp16/onnx/model_int8.onnx
      compressor check out/fp16 --runtime vllm --device cuda --gpu-memory-utilization 0.5   # a CUDA vllm
    """
    from compressor.export.check import check_output, require_pass

    if onnx_path and runtime != "onnxruntime":
        raise UserError("--onnx applies to --runtime onnxruntime only")
    engine = given_engine(engine, runtime)
    try:
        result = check_output(output_dir, runtime, max_tokens=max_tokens, min_agreement=min_agreement,
                              progress=progress_printer(not as_json), eager=eager, onnx=onnx_path, device=device,
                              engine=engine or None)
    except CheckFailed as error:  # the runtime cannot load or run it: a failed check too
        _record(output_dir, {"runtime": runtime, "passed": False, "reasons": [str(error)],
                             "min_agreement": min_agreement})
        raise
    _record(output_dir, result)

    def render(res):
        from rich.table import Table

        info = res["runtime_info"]
        versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
        build = f" {info['build']['device_type']} build" if info.get("build") else ""  # vllm: cpu, cuda, ...
        table = Table(title=f"{res.get('artifact', res['model'])} in {res['runtime']}{build} ({info['dtype']}; "
                            f"{versions}) vs {res['reference']['dtype']} reference on {res['reference']['device']}")
        diff_key = next((k for k in ("logits_max_abs_diff", "logprobs_max_abs_diff") if k in res["summary"]), None)
        for column in ("prompt", "agreement", "prefix match", diff_key.split("_max")[0] + " diff" if diff_key else "diff"):
            table.add_column(column, justify="left" if column == "prompt" else "right")
        for row in res["prompts"]:
            diff = row.get(diff_key) if diff_key else None
            table.add_row(row["prompt"] + ("" if row["prompt_ids_match"] else " [red](ids differ)[/red]"),
                          f"{row['agreement']:.2f}", f"{row['prefix_match']}/{res['max_tokens']}",
                          "-" if diff is None else f"{diff:.4g}")
        console = stderr_console()
        console.print(table)
        verdict = "[green]PASS[/green]" if res["passed"] else "[red]FAIL[/red]"
        console.print(f"{verdict}: mean prefix agreement {res['summary']['prefix_agreement']:.2f} "
                      f"(min {res['min_agreement']:.2f}), agreement {res['summary']['agreement']:.2f}, "
                      f"{res['seconds']['total']:.1f} s")
        kv = res.get("kv_cache")
        if kv:
            tokens = f", {kv['kv_cache_tokens']:,} tokens" if kv.get("kv_cache_tokens") else ""
            asked = kv["checkpoint_scheme"] or "no kv_cache_scheme"
            console.print(f"KV cache: checkpoint {asked}; engine {kv['engine_dtype']}{tokens}"
                          + (f" [yellow]({kv['note']})[/yellow]" if kv.get("note") else ""))

    emit(result, as_json, render)
    require_pass(result)


def _record(output_dir: Path, result: dict) -> None:
    """The verdict into OUTPUT_DIR/check.json (an output folder only: a bare model folder is never written
    into); a folder that cannot be written costs the record, not the check."""
    from compressor.export.check_record import record_check

    if not is_output(output_dir):
        return
    try:
        record_check(output_dir, result)
    except (OSError, UserError) as error:
        click.echo(f"warning: {output_dir / CHECK_JSON}: the verdict is not recorded ({error})", err=True)
