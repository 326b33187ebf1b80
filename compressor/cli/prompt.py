"""`compressor prompt ...`: EHPC evaluator-head discovery and prompt compression (arXiv 2501.12959)."""

import json
import sys
from pathlib import Path

import click

from compressor.core.errors import UserError
from compressor.prompt.methods import METHODS


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


@click.group(name="prompt")
def prompt_group():
    """EHPC prompt pre-compressor: find evaluator heads, then shorten long prompts with them.

    \b
    compressor prompt discover out/fp16                 # writes out/fp16/model/prompt_compressor.json
    compressor prompt compress out/fp16 --rate 0.25 --question "What is the pass key?" < long.txt
    """


@prompt_group.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write OUT/model (a copy of FOLDER's model) instead of FOLDER; needed for a bare model folder.")
@click.option("--force", is_flag=True, help="Replace an existing prompt_compressor.json (or OUT).")
@click.option("--heads", type=int, default=None, help="Evaluator heads to keep (default 8, or all of a model with fewer).")
@click.option("--n-o", "n_o", type=int, default=16, show_default=True, help="Observation window N_o (last queries).")
@click.option("--kernel", type=int, default=32, show_default=True, help="AvgPool1d smoothing kernel r.")
@click.option("--rate", type=float, default=0.5, show_default=True, help="Default share of tokens to keep.")
@click.option("--probe-tokens", type=int, default=2048, show_default=True, help="Tokens per discovery probe.")
@click.option("--max-layer", type=int, default=None,
              help="Search L* among layers 0..N only: a shallower scorer compresses faster (default: all layers).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def discover(folder, out, force, heads, n_o, kernel, rate, probe_tokens, max_layer, seed, device, as_json):
    """Find the evaluator heads of FOLDER's model (needle probes at depths 0.1..0.9).

    FOLDER is an output of `compressor apply` (written into FOLDER/model/prompt_compressor.json,
    heatmap FOLDER/prompt_heads.png) or, with --out, any model folder (copied to OUT/model).

    \b
    Example:
      compressor prompt discover out/fp16
      compressor prompt discover ./SmolLM2 --out out/smol-ehpc --probe-tokens 1024
      compressor prompt discover out/fp16 --max-layer 13 --force   # a faster scorer: L* in layers 0..13
    """
    from pydantic import ValidationError

    from compressor.prompt.commands import discover_folder
    from compressor.core.validation import format_validation_error
    from compressor.prompt.stage import EvaluatorHeadsParams

    try:
        params = EvaluatorHeadsParams(stage="evaluator_heads", heads=heads, n_o=n_o, kernel=kernel, rate=rate,
                                      probe_tokens=probe_tokens, max_layer=max_layer, seed=seed)
    except ValidationError as error:
        raise UserError(format_validation_error("options", error)) from None
    progress = (lambda m: None) if as_json else (lambda m: _echo_err(f"• {m}"))
    result = discover_folder(folder, params, out=out, force=force, device=device, progress=progress)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        _echo_err(f"L* = {result['layer']}, heads {result['heads']}: wrote {result['spec_file']} and "
                  f"{result['heatmap']} in {result['seconds']:.1f} s")


@prompt_group.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.argument("input_file", type=click.File("rb"), default="-")
@click.option("--rate", type=float, default=None, help="Share of tokens to keep, in (0, 1] (default: the folder's).")
@click.option("--target-tokens", type=int, default=None, help="Tokens to keep instead of a rate.")
@click.option("--question", default=None, help="Appended after the context, never dropped, and steers the scores.")
@click.option("--force-keep", multiple=True, help="Text that must survive (every occurrence); repeatable.")
@click.option("--method", type=click.Choice(list(METHODS)), default="ehpc",
              show_default=True, help="EHPC, or a comparison baseline behind the same interface.")
@click.option("--runtime", type=click.Choice(["torch", "onnxruntime"]), default="torch", show_default=True,
              help="EHPC scores from layers 0..L* in torch, or from FOLDER/onnx/scorer.onnx in onnxruntime "
                   "(written by `compressor export onnx`); the selection is the same.")
@click.option("--device", default="auto", show_default=True,
              help="auto (CUDA when available), cpu, cuda, cuda:N (torch runtime; onnxruntime: auto or cpu).")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True,
              help="Dtype of the torch scoring model (bfloat16 is faster on CPUs with AVX512-BF16/AMX and on GPUs).")
@click.option("--coarse", type=click.Choice(["tokens", "passages"]), default=None,
              help="tokens: the published token-level selection; passages: rank the paragraphs (or documents) "
                   "by their tokens' scores, keep the best, select words inside them (default: the folder's).")
@click.option("--reorder/--no-reorder", default=None,
              help="With --coarse passages: write the kept passages best first (default: the folder's).")
@click.option("--document-marker", default=None, metavar="TEXT",
              help="INPUT_FILE holds documents separated by TEXT (the passages of --coarse passages).")
@click.option("--html", "html_file", type=click.Path(path_type=Path), default=None,
              help="Write a page highlighting the kept words.")
@click.option("--json", "as_json", is_flag=True, help="Print the result (text and token counts) as JSON.")
def compress(folder, input_file, rate, target_tokens, question, force_keep, method, runtime, device, dtype,
             coarse, reorder, document_marker, html_file, as_json):
    """Compress a prompt (INPUT_FILE, default stdin) with FOLDER's evaluator heads; print the result.

    \b
    Example:
      compressor prompt compress out/fp16 long.txt --rate 0.25 --question "What is the pass key?"
      cat long.txt | compressor prompt compress out/fp16 --target-tokens 512 --json
      compressor prompt compress out/fp16 long.txt --runtime onnxruntime   # after `compressor export onnx out/fp16`
      compressor prompt compress out/fp16 long.txt --coarse passages --reorder --question "What is the pass key?"
      compressor prompt compress out/fp16 docs.txt --coarse passages --document-marker "<doc>" --rate 0.3
    """
    from compressor.prompt.commands import check_compress_args, load_compressor
    from compressor.prompt.compressor import MAX_PROMPT_BYTES, decode_prompt

    if runtime != "torch" and method != "ehpc":
        raise UserError(f"--runtime {runtime} applies to --method ehpc only")
    if runtime != "torch" and (device not in ("auto", "cpu") or dtype != "float32"):
        raise UserError(f"--device and --dtype place the torch scorer; --runtime {runtime} runs scorer.onnx as exported")
    from compressor.models.sources import pick_device

    device = str(pick_device(device)) if runtime == "torch" else "cpu"  # the device used, as the JSON reports it
    text = decode_prompt(getattr(input_file, "name", "stdin"), input_file.read(MAX_PROMPT_BYTES + 1))
    check_compress_args(text, rate, target_tokens)
    # passed only when given, so that LLMLingua's compress (which has no such keywords) takes the call too
    options = {k: v for k, v in (("coarse", coarse), ("reorder", reorder)) if v is not None}
    if document_marker is not None:
        if not document_marker:
            raise UserError("--document-marker: give the text that separates the documents")
        options["documents"] = text.split(document_marker)
    if options and method in ("llmlingua", "longllmlingua"):
        raise UserError(f"--coarse, --reorder and --document-marker apply to ehpc, random and ends; {method} "
                        f"ranks documents its own way")
    compressor = load_compressor(folder, method, runtime, device, dtype)
    result = compressor.compress(None if "documents" in options else text, rate=rate, target_tokens=target_tokens,
                                 question=question, force=list(force_keep), **options)
    if html_file:
        from compressor.core.atomic import atomic_file
        from compressor.prompt.html import compression_html

        with atomic_file(Path(html_file), force=True) as tmp:
            tmp.write_text(compression_html(result), encoding="utf-8")
    if as_json:
        summary = {**result.summary(), "runtime": runtime}
        if runtime == "torch":
            summary.update(device=device, dtype=dtype)
        if html_file:
            summary["html"] = str(html_file)
        click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(result.text + "\n")
        where = "" if runtime == "torch" else f" ({runtime})"
        _echo_err(f"{result.method}{where}: {result.tokens_in} -> {result.tokens_out} tokens "
                  f"(budget {result.budget}) in {result.seconds:.2f} s")


@prompt_group.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--upstream", required=True,
              help="Base URL of the OpenAI-compatible server to forward to (vLLM), without /v1.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True, help="Port to listen on (0: any free one).")
@click.option("--rate", type=float, default=None, help="Share of tokens to keep, in (0, 1] (default: the folder's).")
@click.option("--min-tokens", type=int, default=1024, show_default=True,
              help="Compress prompts of at least this many tokens; shorter ones go upstream unchanged.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when available), cpu, cuda, cuda:N.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True,
              help="Dtype of the scoring model.")
def serve(folder, upstream, host, port, rate, min_tokens, device, dtype):
    """Serve an OpenAI-compatible proxy in front of UPSTREAM that compresses long prompts with FOLDER's heads.

    POST /v1/chat/completions (the last user message) and /v1/completions (a string prompt) of at least
    --min-tokens tokens are compressed, the final sentence kept verbatim as the question; everything else goes
    upstream byte for byte. Responses carry x-compressor-tokens-before, -tokens-after and -ms headers. A request
    may mark its question, rate or opt-out: "compressor": {"question": "...", "rate": 0.25, "skip": true}
    (removed before forwarding), or the header X-Compressor-Question.

    \b
    Example:
      vllm serve out/fp16/model --port 8001 &
      compressor prompt serve out/fp16 --upstream http://127.0.0.1:8001 --port 8000 --rate 0.25
    """
    from compressor.prompt.commands import load_compressor
    from compressor.prompt.spec import read_spec

    try:
        from compressor.prompt.serve import bind, check_upstream, create_app
        from compressor.prompt.serve import serve as run_server
    except ImportError as error:  # fastapi, httpx, uvicorn: the `serve` extra
        raise UserError(f"`prompt serve` needs {error.name or error}: pip install -e '.[serve]' "
                        f"(or pip install -r requirements.txt)") from None

    if rate is not None and not 0 < rate <= 1:
        raise UserError(f"--rate {rate}: must be in (0, 1]")
    if min_tokens < 1:
        raise UserError(f"--min-tokens {min_tokens}: must be at least 1")
    read_spec(folder)  # no prompt_compressor.json: say so before contacting anything
    check_upstream(upstream)
    sock = bind(host, port)
    compressor = load_compressor(folder, "ehpc", "torch", device, dtype)
    rate = rate if rate is not None else compressor.default_rate
    app = create_app(compressor, upstream, rate, min_tokens)
    where = sock.getsockname()
    _echo_err(f"compressor prompt serve: listening on http://{host}:{where[1]}, forwarding to {upstream.rstrip('/')} "
              f"(rate {rate:g} for prompts of {min_tokens}+ tokens)")
    run_server(app, sock)
