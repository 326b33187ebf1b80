"""`compressor export onnx DIR`: the ONNX export (and the EHPC scorer) with its parity gate."""

from pathlib import Path

import click

from compressor.cli.output import emit, progress_printer, stderr_console
from compressor.core.errors import UserError


@click.group()
def export():
    """Export an output to another format (ONNX)."""


@export.command(name="onnx")
@click.argument("output_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Folder to write (default: OUTPUT_DIR/onnx).")
@click.option("--int8", is_flag=True, help="Also write model_int8.onnx (onnxruntime int8) with its parity and speed.")
@click.option("--int8-method", type=click.Choice(["matmul-nbits", "dynamic"]), default="matmul-nbits",
              show_default=True, help="matmul-nbits: MatMulNBits 8-bit, weights and activations in blocks of 32; "
                                      "dynamic: quantize_dynamic (one scale per activation tensor: far less accurate).")
@click.option("--atol", type=click.FloatRange(0, min_open=True), default=1e-2, show_default=True,
              help="Largest logits difference (fp32 ONNX vs torch) that passes.")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Smallest mean greedy prefix agreement (fp32 ONNX vs torch) that passes.")
@click.option("--scorer/--no-scorer", default=None,
              help="Also export the EHPC prompt scorer as scorer.onnx (default: when model/prompt_compressor.json "
                   "exists; --scorer requires it).")
@click.option("--scorer-only", is_flag=True, help="Write only scorer.onnx (+ its spec and tokenizer), no model.onnx.")
@click.option("--force", is_flag=True, help="Overwrite an existing ONNX folder.")
@click.option("--device", default="auto", show_default=True,
              help="Where the fp32 torch reference of the parity check runs: auto (CUDA when available), cpu, "
                   "cuda, cuda:N. The export itself runs on the CPU.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def export_onnx_command(output_dir, out_dir, int8, int8_method, atol, min_agreement, scorer, scorer_only, force,
                        device, as_json):
    """Export OUTPUT_DIR/model to ONNX with KV cache (optimum-onnx), checked against torch fp32.

    Writes OUTPUT_DIR/onnx/ (model.onnx, config, tokenizer, compressor.json) only when the fp32 export
    agrees with torch: logits within --atol and greedy tokens matching on the fixed prompts. An output with
    an EHPC pre-compressor (model/prompt_compressor.json) also gets scorer.onnx (layers 0..L*, input_ids ->
    token scores), written only when its scores and kept words match the torch scorer.

    \b
    Example:
      compressor export onnx out/fp16
      compressor export onnx out/drop-layers --int8 --force --json
      compressor export onnx out/ehpc --scorer-only      # then: compressor prompt compress out/ehpc --runtime onnxruntime
    """
    from compressor.export.onnx_export import export_onnx

    source = click.get_current_context().get_parameter_source("int8_method")
    if not int8 and source == click.core.ParameterSource.COMMANDLINE:
        raise UserError("--int8-method applies with --int8 only")
    result = export_onnx(output_dir, out=out_dir, int8=int8, int8_method=int8_method, force=force, atol=atol,
                         min_agreement=min_agreement, scorer=scorer, scorer_only=scorer_only,
                         progress=progress_printer(not as_json), device=device)

    def render(res):
        from rich.table import Table

        table = Table(title=f"{res['onnx_dir']} vs {res['parity']['reference'].removesuffix(' (transformers)')} "
                            f"({len(res['parity']['prompts'])} prompts, "
                            f"{res['parity']['max_tokens']} greedy tokens)")
        for column in ("artifact", "MB", "logits max diff", "agreement", "prefix agreement", "decode tok/s"):
            table.add_column(column, justify="left" if column == "artifact" else "right")
        for art in res["artifacts"]:
            method = f" ({art['quantization']['method']})" if art.get("quantization") else ""
            table.add_row(f"{art['file']}{method}", f"{art['size_mb']:.1f}", f"{art['logits_max_abs_diff']:.3g}",
                          f"{art['agreement']:.2f}", f"{art['prefix_agreement']:.2f}",
                          f"{art['decode_tokens_per_s']:.1f}" if art["decode_tokens_per_s"] else "-")
        console = stderr_console()
        if res["artifacts"]:
            console.print(table)
            console.print(f"[green]PASS[/green]: fp32 logits within {res['parity']['atol']:g}, greedy prefix "
                          f"agreement >= {res['parity']['min_agreement']:.2f} (int8 reported, not gated); "
                          f"export {res['seconds']['export']:.1f} s, total {res['seconds']['total']:.1f} s")
        if res["scorer"]:
            from compressor.export.scorer_onnx import scorer_summary_line

            console.print(scorer_summary_line(res["scorer"]))

    emit(result, as_json, render)
