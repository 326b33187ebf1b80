"""`compressor prompt serve`: the OpenAI-compatible proxy that compresses long prompts before vLLM sees them.

The proxy and a stub upstream (which records the raw bytes it receives) both run under uvicorn on free ports."""

import json
import sys
import threading
import time
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from cli_runner import assert_one_line_error, run_cli
from compressor.prompt import PromptCompressor
from compressor.prompt.serve import bind, create_app, split_question
from compressor.runtimes.vllm_runtime import vllm_python
from compressor.runtimes.vllm_server import free_port
from test_prompt import ENGLISH, KOREAN
from test_prompt import ehpc_dir  # noqa: F401  (a fixture: the tiny Llama with a prompt_compressor.json)

QUESTION = "What time does the library open?"
LONG = ENGLISH * 12 + "\n\n" + QUESTION  # ~1,200 byte tokens of the tiny model's byte tokenizer
MIN_TOKENS = 300
CHUNKS = [b'data: {"n": 1}\n\n', b'data: {"n": 2}\n\n', b"data: [DONE]\n\n"]


class Upstream:
    """A stub OpenAI server: records each request's raw bytes; /v1/*completions answer fixed bytes, 400 for the
    model "missing", an SSE stream for "stream": true (chunk 2 waits until the test saw chunk 1)."""

    answer = b'{"id":"x","choices":[{"message":{"role":"assistant","content":"nine"}}],  "spacing":"kept"}'

    def __init__(self):
        self.seen = []
        self.first_chunk_received = threading.Event()
        self.streamed_before_gate = None
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=["GET", "POST", "DELETE"])])

    async def handle(self, request: Request):
        body = await request.body()
        self.seen.append({"method": request.method, "path": request.url.path, "query": request.url.query,
                          "headers": dict(request.headers), "body": body})
        if request.url.path == "/v1/models":
            return Response(b'{"object":"list","data":[{"id":"stub"}]}', media_type="application/json",
                            headers={"x-upstream": "yes"})
        if request.url.path not in ("/v1/chat/completions", "/v1/completions"):
            return Response(b"not here", status_code=404)
        data = json.loads(body)
        if data.get("model") == "missing":
            return Response(b'{"error":{"message":"The model `missing` does not exist."}}', status_code=400,
                            media_type="application/json")
        if data.get("stream"):
            return StreamingResponse(self.stream(), media_type="text/event-stream")
        return Response(self.answer, media_type="application/json", headers={"x-upstream": "yes"})

    async def stream(self):
        import asyncio

        yield CHUNKS[0]
        for _ in range(500):  # the proxy must pass chunk 1 on before the stream ends
            if self.first_chunk_received.is_set():
                break
            await asyncio.sleep(0.01)
        self.streamed_before_gate = self.first_chunk_received.is_set()
        for chunk in CHUNKS[1:]:
            yield chunk


@contextmanager
def running(app):
    """`app` under uvicorn in a thread, on a free port; yields its base URL."""
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


@pytest.fixture(scope="module")
def compressor(ehpc_dir):  # noqa: F811
    return PromptCompressor.from_pretrained(ehpc_dir)


@pytest.fixture
def upstream():
    stub = Upstream()
    with running(stub.app) as url:
        stub.url = url
        yield stub


@pytest.fixture
def proxy(compressor, upstream):
    with running(create_app(compressor, upstream.url, rate=0.25, min_tokens=MIN_TOKENS)) as url:
        yield url


def test_split_question_takes_the_final_sentence_or_the_marked_one():
    assert split_question("Read this. And this!\nWhat is it? Answer briefly.  \n") == (
        "Read this. And this!\nWhat is it? ", "Answer briefly.")
    assert split_question("Context here.\n\nWhat is the key?") == ("Context here.\n\n", "What is the key?")
    assert split_question(KOREAN + "비밀 번호는 무엇인가요?")[1] == "비밀 번호는 무엇인가요?"
    assert split_question("서울은 맑다. 부산은 흐리다.")[1] == "부산은 흐리다."
    assert split_question("one line without an end") == ("", "one line without an end")
    assert split_question("Q?\n\nbody text.\n\nQ?\nAnswer:", question="Q?\nAnswer:") == ("Q?\n\nbody text.\n\n",
                                                                                         "Q?\nAnswer:")
    assert split_question("body text.", question="Where?") == ("body text.", "Where?")  # not at the end: appended


def test_short_chat_goes_upstream_byte_for_byte_and_comes_back_unchanged(proxy, upstream, compressor):
    raw = b'{ "model":"m",\n  "messages":[{"role":"user","content":"Hi \\u00e9 there."}], "max_tokens": 5 }'
    response = httpx.post(f"{proxy}/v1/chat/completions", content=raw,
                          headers={"content-type": "application/json", "authorization": "Bearer k"})
    assert response.status_code == 200 and response.content == Upstream.answer
    assert response.headers["x-upstream"] == "yes"
    [seen] = upstream.seen
    assert seen["body"] == raw
    assert seen["headers"]["authorization"] == "Bearer k"
    count = compressor.count_tokens("Hi é there.")
    assert response.headers["x-compressor-tokens-before"] == response.headers["x-compressor-tokens-after"] == str(count)
    no_user = b'{"model":"m","messages":[{"role":"system","content":"' + b"x" * 2000 + b'"}]}'
    httpx.post(f"{proxy}/v1/chat/completions", content=no_user)
    assert upstream.seen[-1]["body"] == no_user


def test_long_chat_is_compressed_with_the_question_kept_at_the_end(proxy, upstream, compressor):
    before = compressor.count_tokens(LONG)
    response = httpx.post(f"{proxy}/v1/chat/completions", json={
        "model": "m", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": LONG}]})
    assert response.status_code == 200 and response.content == Upstream.answer
    sent = json.loads(upstream.seen[-1]["body"])
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    content = sent["messages"][1]["content"]
    assert content.endswith("\n\n" + QUESTION)
    after = compressor.count_tokens(content)
    assert after < 0.4 * before
    headers = response.headers
    assert int(headers["x-compressor-tokens-before"]) == before and int(headers["x-compressor-tokens-after"]) == after
    assert float(headers["x-compressor-ms"]) > 0

    # a marked question (field, removed before forwarding; or header), a rate per request, text parts and an image
    marked = "Korean: " + KOREAN * 6
    parts = [{"type": "text", "text": marked}, {"type": "image_url", "image_url": {"url": "data:,"}},
             {"type": "text", "text": "Answer in one word."}]
    httpx.post(f"{proxy}/v1/chat/completions", json={
        "model": "m", "messages": [{"role": "user", "content": parts}],
        "compressor": {"question": "Where is the password?", "rate": 0.5}})
    sent = json.loads(upstream.seen[-1]["body"])
    assert "compressor" not in sent
    [text, image] = sent["messages"][0]["content"]
    assert image["type"] == "image_url" and text["text"].endswith("\n\nWhere is the password?")
    assert compressor.count_tokens(text["text"]) < 0.7 * compressor.count_tokens(marked)
    asked = "When does it open? Reply in digits."  # the final sentence alone would be "Reply in digits."
    httpx.post(f"{proxy}/v1/completions", json={"model": "m", "prompt": ENGLISH * 12 + "\n\n" + asked},
               headers={"X-Compressor-Question": "When%20does%20it%20open%3F%20Reply%20in%20digits."})
    sent = upstream.seen[-1]
    assert json.loads(sent["body"])["prompt"].endswith("\n\n" + asked)
    assert not any(h.startswith("x-compressor") for h in sent["headers"])
    skip = httpx.post(f"{proxy}/v1/completions", json={"model": "m", "prompt": LONG, "compressor": {"skip": True}})
    assert json.loads(upstream.seen[-1]["body"]) == {"model": "m", "prompt": LONG}
    assert "x-compressor-tokens-before" not in skip.headers
    bad = httpx.post(f"{proxy}/v1/completions", json={"model": "m", "prompt": LONG, "compressor": {"rate": 2}})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_streaming_passes_chunks_through_as_they_arrive(proxy, upstream):
    received = []
    with httpx.stream("POST", f"{proxy}/v1/chat/completions", timeout=30, json={
            "model": "m", "stream": True, "messages": [{"role": "user", "content": LONG}]}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        assert int(response.headers["x-compressor-tokens-after"]) < int(response.headers["x-compressor-tokens-before"])
        for chunk in response.iter_raw():
            received.append(chunk)
            upstream.first_chunk_received.set()
    assert b"".join(received) == b"".join(CHUNKS)
    assert upstream.streamed_before_gate  # chunk 1 reached the client while the upstream still held chunk 2
    assert json.loads(upstream.seen[-1]["body"])["messages"][0]["content"].endswith(QUESTION)


def test_upstream_errors_come_back_as_sent_and_a_dead_upstream_gives_502(compressor):
    upstream = running(Upstream().app)
    upstream_url = upstream.__enter__()
    with running(create_app(compressor, upstream_url, rate=0.25, min_tokens=MIN_TOKENS)) as proxy:
        error = httpx.post(f"{proxy}/v1/chat/completions",
                           json={"model": "missing", "messages": [{"role": "user", "content": LONG}]})
        assert error.status_code == 400
        assert error.content == b'{"error":{"message":"The model `missing` does not exist."}}'
        upstream.__exit__(None, None, None)  # the upstream goes away while the proxy runs
        gone = httpx.post(f"{proxy}/v1/chat/completions", json={"model": "m", "messages": [
            {"role": "user", "content": "Hi."}]})
        assert gone.status_code == 502
        assert gone.json()["error"]["type"] == "upstream_unreachable"
        assert httpx.get(f"{proxy}/v1/models").status_code == 502


def test_everything_else_passes_through(proxy, upstream):
    response = httpx.get(f"{proxy}/v1/models?limit=2&x=%20y", headers={"x-trace": "t1"})
    assert response.status_code == 200 and response.content == b'{"object":"list","data":[{"id":"stub"}]}'
    assert response.headers["x-upstream"] == "yes" and "x-compressor-tokens-before" not in response.headers
    seen = upstream.seen[-1]
    assert (seen["method"], seen["path"], seen["query"]) == ("GET", "/v1/models", "limit=2&x=%20y")
    assert seen["headers"]["x-trace"] == "t1"
    gone = httpx.delete(f"{proxy}/docs")  # the stub's answer: the proxy has no routes of its own
    assert (gone.status_code, gone.content) == (404, b"not here")
    assert upstream.seen[-1]["path"] == "/docs"


@pytest.mark.parametrize("case", ["no-spec", "unreachable", "bad-url", "rate", "min-tokens"])
def test_cli_start_errors_are_one_line(monkeypatch, capsys, tiny_llama_dir, ehpc_dir, case):  # noqa: F811
    folder = tiny_llama_dir if case == "no-spec" else ehpc_dir
    upstream = "ftp://example" if case == "bad-url" else f"http://127.0.0.1:{free_port()}"
    extra = {"rate": ["--rate", "0"], "min-tokens": ["--min-tokens", "0"]}.get(case, [])
    code, out, err = run_cli(monkeypatch, capsys, "prompt", "serve", str(folder), "--upstream", upstream, *extra)
    assert_one_line_error(code, err)
    assert {"no-spec": "prompt_compressor.json", "unreachable": "unreachable", "bad-url": "http(s)",
            "rate": "--rate", "min-tokens": "--min-tokens"}[case] in err


@pytest.mark.e2e
@pytest.mark.skipif(vllm_python() is None, reason="no .venv-vllm: run `make install-vllm` (CI does)")
def test_e2e_vllm_behind_the_proxy(tmp_path):
    """The real vLLM server (CPU build) on SmolLM2-135M, `compressor prompt serve` in front: a long chat request
    answered both directly and through the proxy, which sends far fewer tokens."""
    from compressor.models.builtin import materialize_builtin
    from compressor.prompt.commands import discover_folder
    from compressor.prompt.stage import EvaluatorHeadsParams
    from compressor.runtimes.vllm_server import start_server, start_vllm_server, stop_server

    model = materialize_builtin("smollm2-135m")
    folder = tmp_path / "smol"
    params = EvaluatorHeadsParams(stage="evaluator_heads", probe_tokens=512, depths=[0.5], max_layer=12)
    discover_folder(model, params, out=folder, device="cpu")
    vllm_port, proxy_port = free_port(), free_port()
    servers = []
    try:
        servers.append(start_vllm_server(folder / "model", vllm_port, tmp_path / "vllm.log", max_model_len=4096))
        upstream = f"http://127.0.0.1:{vllm_port}"
        servers.append(start_server(
            [sys.executable, "-m", "compressor.cli.app", "prompt", "serve", str(folder), "--upstream", upstream,
             "--port", str(proxy_port), "--min-tokens", "512", "--rate", "0.25"],
            f"http://127.0.0.1:{proxy_port}", tmp_path / "proxy.log", timeout_s=120, what="the proxy"))
        text = (ENGLISH * 30 + "The pass key is 71432. Remember it. " + ENGLISH * 30
                + "\n\nWhat is the pass key?")
        request = {"model": str(folder / "model"), "max_tokens": 12, "temperature": 0,
                   "messages": [{"role": "user", "content": text}]}
        direct = httpx.post(f"{upstream}/v1/chat/completions", json=request, timeout=120)
        proxied = httpx.post(f"http://127.0.0.1:{proxy_port}/v1/chat/completions", json=request, timeout=120)
        for response in (direct, proxied):
            assert response.status_code == 200, response.text
            assert response.json()["choices"][0]["message"]["content"].strip()
        before, after = (int(proxied.headers[f"x-compressor-tokens-{k}"]) for k in ("before", "after"))
        assert after < 0.5 * before
        assert proxied.json()["usage"]["prompt_tokens"] < 0.5 * direct.json()["usage"]["prompt_tokens"]
    finally:
        for server in reversed(servers):
            stop_server(server)
