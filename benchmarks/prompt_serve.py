"""Answer latency of vLLM with and without `compressor prompt serve` in front, by prompt length (issue 21, (c)).

    .venv/bin/python benchmarks/prompt_serve.py                                   # 3 items at ~2k, ~4k, ~8k tokens
    .venv/bin/python benchmarks/prompt_serve.py --per-length 1 --lengths 2048     # a smoke run
    .venv/bin/python benchmarks/prompt_serve.py --per-length 5 --json serve.json

Starts vLLM's OpenAI server (the CPU build in .venv-vllm; bundled SmolLM2-135M; max-model-len 8192; prefix
caching off, so no request reuses another's prefill) and the proxy in front of it (rate 1/4, every prompt
compressed). Each RULER-style item (scripts/make_ehpc_tasks.py) is sent as POST /v1/completions with the prompt of
benchmarks/ehpc.py (the question before and after the context, the answer primed), (a) straight to vLLM, (b)
through the proxy, which keeps the final "question / Answer: prefix" verbatim (marked with the request's
`compressor.question`) and compresses the rest. /v1/completions, not chat: SmolLM2's chat template closes the
user turn after the primed answer prefix and opens an assistant turn, which undoes the priming.

Latency is the client's wall time per request (the proxy's includes its compression, also reported from the
x-compressor-ms header); an item is right when its answer string is in the 12 greedy tokens. Prints per length:
prompt tokens vLLM saw, latency direct vs through the proxy, their ratio, accuracy of both, and the break-even
prompt length (interpolated where the ratio crosses 1).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def pick_items(module, tokenizer, length: int, n: int, seed: int) -> list[dict]:
    """n items of 90-95% of `length` tokens (room for the question twice and the answer), kinds in turn."""
    pool = module.make_tasks(tokenizer, per_kind=-(-n // len(module.KINDS)), min_tokens=int(0.9 * length),
                             max_tokens=int(0.95 * length), seed=seed)
    pool.sort(key=lambda item: int(item["id"].rsplit("-", 1)[1]))  # stable: single, multikey, passkey, single, ...
    return pool[:n]


def ask(client, url: str, model: str, prompt: str, question: str | None = None) -> dict:
    body = {"model": model, "prompt": prompt, "max_tokens": 12, "temperature": 0}
    if question is not None:
        body["compressor"] = {"question": question}
    started = time.perf_counter()
    response = client.post(f"{url}/v1/completions", json=body)
    seconds = time.perf_counter() - started
    response.raise_for_status()
    data = response.json()
    return {"seconds": seconds, "text": data["choices"][0]["text"], "prompt_tokens": data["usage"]["prompt_tokens"],
            "compress_ms": float(response.headers.get("x-compressor-ms", 0))}


def summarize(rows: list[dict]) -> list[dict]:
    table = []
    for length in sorted({r["length"] for r in rows}):
        sel = [r for r in rows if r["length"] == length]
        mean = lambda key: statistics.mean(r[key] for r in sel)  # noqa: E731
        table.append({"length": length, "items": len(sel), "tokens_full": mean("tokens_full"),
                      "tokens_sent": mean("tokens_sent"), "latency_full_s": mean("latency_full_s"),
                      "latency_proxy_s": mean("latency_proxy_s"), "compress_s": mean("compress_ms") / 1000,
                      "ratio": mean("latency_proxy_s") / mean("latency_full_s"),
                      "accuracy_full": mean("correct_full"), "accuracy_proxy": mean("correct_proxy")})
    return table


def break_even(table: list[dict]) -> float | str | None:
    """The prompt length (tokens) where the proxy's latency ratio crosses 1, interpolated between lengths."""
    points = [(row["tokens_full"], row["ratio"]) for row in table]
    for (x0, r0), (x1, r1) in zip(points, points[1:]):
        if (r0 - 1) * (r1 - 1) <= 0 and r0 != r1:
            return x0 + (1 - r0) * (x1 - x0) / (r1 - r0)
    if not points:
        return None
    if all(r < 1 for _, r in points):
        return f"below {points[0][0]:.0f}"
    return f"above {points[-1][0]:.0f}"


def render(table: list[dict], even) -> str:
    lines = ["| length | items | tokens full -> sent | latency full (s) | via proxy (s) | of which compression (s) | "
             "ratio | accuracy full | accuracy via proxy |", "|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| ~{r['length'] // 1024}k | {r['items']} | {r['tokens_full']:.0f} -> {r['tokens_sent']:.0f} | "
                     f"{r['latency_full_s']:.2f} | {r['latency_proxy_s']:.2f} | {r['compress_s']:.2f} | "
                     f"{r['ratio']:.2f} | {r['accuracy_full']:.2f} | {r['accuracy_proxy']:.2f} |")
    even = f"{even:.0f} tokens" if isinstance(even, float) else (even or "n/a")
    return "\n".join(lines) + f"\n\nbreak-even prompt length (the proxy as fast as vLLM alone): {even}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ehpc-dir", default=None, help="output or model folder with prompt_compressor.json "
                        "(default: discovered once on the bundled SmolLM2, as benchmarks/ehpc.py does)")
    parser.add_argument("--lengths", default="2048,4096,8192", help="prompt lengths in tokens, comma-separated")
    parser.add_argument("--per-length", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", dest="json_file", default=None)
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]

    import httpx
    from transformers import AutoTokenizer

    from ehpc import _tasks_module, ehpc_folder, prompt_for
    from compressor.prompt.spec import spec_folder
    from compressor.runtimes.vllm_server import free_port, start_server, start_vllm_server, stop_server

    progress = lambda m: print(f"• {m}", file=sys.stderr, flush=True)  # noqa: E731
    folder = ehpc_folder(args.ehpc_dir, 2048, progress)
    model = spec_folder(folder)
    tokenizer = AutoTokenizer.from_pretrained(model)
    module = _tasks_module()
    items = [(length, item) for length in lengths for item in pick_items(module, tokenizer, length, args.per_length,
                                                                          args.seed)]
    logs = Path(tempfile.mkdtemp(prefix="prompt-serve-bench-"))
    servers = []
    try:
        vllm_port, proxy_port = free_port(), free_port()
        started = time.perf_counter()
        servers.append(start_vllm_server(model, vllm_port, logs / "vllm.log", max_model_len=8192,
                                         extra_args=("--no-enable-prefix-caching",)))
        vllm_start = time.perf_counter() - started
        progress(f"vLLM ready in {vllm_start:.0f} s")
        direct = f"http://127.0.0.1:{vllm_port}"
        proxy = f"http://127.0.0.1:{proxy_port}"
        servers.append(start_server([sys.executable, "-m", "compressor.cli.app", "prompt", "serve", str(folder),
                                     "--upstream", direct, "--port", str(proxy_port), "--rate", str(args.rate),
                                     "--min-tokens", "1", "--device", "cpu"],
                                    proxy, logs / "proxy.log", timeout_s=300, what="the proxy"))
        rows = []
        with httpx.Client(timeout=None) as client:
            warm = items[0][1]
            ask(client, direct, str(model), prompt_for(warm, warm["context"][:2000]))
            ask(client, proxy, str(model), prompt_for(warm, warm["context"][:2000]), warm["question"])
            for number, (length, item) in enumerate(items, 1):
                progress(f"item {number}/{len(items)} {item['id']} ({item['n_tokens']} context tokens)")
                prompt = prompt_for(item, item["context"])
                tail = f"{item['question']}\nAnswer: {item['answer_prefix']}"  # the end of prompt_for's prompt
                full = ask(client, direct, str(model), prompt)
                short = ask(client, proxy, str(model), prompt, tail)
                rows.append({"length": length, "id": item["id"], "tokens_full": full["prompt_tokens"],
                             "tokens_sent": short["prompt_tokens"], "latency_full_s": full["seconds"],
                             "latency_proxy_s": short["seconds"], "compress_ms": short["compress_ms"],
                             "correct_full": item["answer"] in full["text"],
                             "correct_proxy": item["answer"] in short["text"],
                             "answer": item["answer"], "text_full": full["text"], "text_proxy": short["text"]})
    finally:
        for server in reversed(servers):
            stop_server(server)
    table = summarize(rows)
    even = break_even(table)
    print(f"vLLM CPU build, SmolLM2-135M, max-model-len 8192, proxy rate {args.rate}; "
          f"vLLM started in {vllm_start:.0f} s")
    print(render(table, even))
    if args.json_file:
        Path(args.json_file).write_text(json.dumps({"table": table, "break_even_tokens": even, "rows": rows,
                                                    "rate": args.rate, "vllm_start_s": vllm_start}, indent=2))


if __name__ == "__main__":
    main()
