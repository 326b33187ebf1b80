"""`compressor prompt serve`: an OpenAI-compatible proxy that shortens long prompts with EHPC before vLLM sees them.

POST /v1/chat/completions (its last user message) and /v1/completions (a string prompt) holding at least
`min_tokens` tokens are compressed: the question (the text's final sentence, or the one a request marks) is kept
verbatim at the end, the rest shrinks to `rate` of its tokens. Everything else, short prompts included, goes
upstream byte for byte, and every response comes back as the upstream sent it (SSE chunks as they arrive), with
x-compressor-tokens-before / -tokens-after / -ms headers on the requests that were counted.

A request marks its question, rate or opt-out with a top-level field (removed before forwarding)
`"compressor": {"question": "...", "rate": 0.25, "skip": true}`, or the question with the header
X-Compressor-Question (percent-encoded UTF-8 for text beyond ASCII).
"""

import asyncio
import json
import re
import socket
import time
from contextlib import asynccontextmanager
from urllib.parse import unquote

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from compressor.core.errors import UserError

FIELD = "compressor"
QUESTION_HEADER = "x-compressor-question"
PROMPT_PATHS = ("/v1/chat/completions", "/v1/completions")
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
              b"trailers", b"transfer-encoding", b"upgrade", b"host", b"content-length"}
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


def split_question(text: str, question: str | None = None) -> tuple[str, str]:
    """(context, question) of a prompt: the marked question taken off its end (or, when the text does not end
    with it, the whole text and the question after it), else the final sentence of its last non-empty line."""
    body = text.rstrip()
    if question and question.strip():
        question = question.strip()
        return (body[:-len(question)], question) if body.endswith(question) else (text, question)
    line_start = body.rfind("\n") + 1
    ends = [m.end() for m in _SENTENCE_END.finditer(body, line_start)]
    start = ends[-1] if ends else line_start
    return body[:start], body[start:]


class BadRequest(Exception):
    pass


def _prompt_slot(path: str, data: dict):
    """(text, put) for the prompt a request would have compressed, or None: put(new) rewrites it in `data`."""
    if path == "/v1/completions":
        return (data["prompt"], lambda new: data.__setitem__("prompt", new)) if isinstance(data.get("prompt"), str) \
            else None
    messages = data.get("messages")
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"] \
        if isinstance(messages, list) else []
    if not users:
        return None
    message = users[-1]
    content = message.get("content")
    if isinstance(content, str):
        return content, lambda new: message.__setitem__("content", new)
    if not isinstance(content, list):
        return None
    parts = [p for p in content if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)]
    if not parts:
        return None

    def put(new: str) -> None:  # the text parts become one, where the first was; images and the like stay
        parts[0]["text"] = new
        rest = {id(p) for p in parts[1:]}
        message["content"] = [p for p in content if id(p) not in rest]

    return "\n".join(p["text"] for p in parts), put


def _options(data: dict, default_rate: float) -> tuple[str | None, float, bool]:
    """(question, rate, skip) from the request's `compressor` field, which is removed from `data`."""
    options = data.pop(FIELD, None) or {}
    if not isinstance(options, dict):
        raise BadRequest(f"'{FIELD}' must be an object like {{\"question\": \"...\", \"rate\": 0.25, \"skip\": false}}")
    unknown = set(options) - {"question", "rate", "skip"}
    if unknown:
        raise BadRequest(f"'{FIELD}': unknown keys {sorted(unknown)} (known: question, rate, skip)")
    question, rate = options.get("question"), options.get("rate", default_rate)
    if question is not None and not isinstance(question, str):
        raise BadRequest(f"'{FIELD}.question' must be a string")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
        raise BadRequest(f"'{FIELD}.rate' must be a number in (0, 1], got {rate!r}")
    return question, float(rate), bool(options.get("skip", False))


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def create_app(compressor, upstream: str, rate: float, min_tokens: int,
               client: httpx.AsyncClient | None = None) -> FastAPI:
    """The proxy in front of `upstream` (base URL, no /v1); `compressor` has count_tokens and compress."""
    upstream = upstream.rstrip("/")
    owned = client is None
    client = client or httpx.AsyncClient(timeout=httpx.Timeout(None, connect=10.0))  # generation may take minutes
    lock = asyncio.Lock()  # one scorer: one compression at a time

    @asynccontextmanager
    async def lifespan(app):
        yield
        if owned:
            await client.aclose()

    # no docs routes of our own: /docs, /openapi.json go upstream like everything else
    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    def shorten(text: str, question: str | None, rate: float) -> tuple[str | None, dict]:
        started = time.perf_counter()
        before = compressor.count_tokens(text)
        result = None
        if before >= min_tokens:
            context, question = split_question(text, question)
            if context.strip():
                try:
                    result = compressor.compress(context, rate=rate, question=question)
                except UserError as error:
                    raise BadRequest(f"compressor: {error}") from None
        report = {"tokens-before": before, "tokens-after": result.tokens_out if result else before,
                  "ms": round((time.perf_counter() - started) * 1000, 1)}
        return (result.text if result else None), report

    async def rewrite(path: str, raw: bytes, header_question: str | None) -> tuple[bytes, dict]:
        """The body to forward (`raw` itself unless it changes) and the x-compressor-* report."""
        try:
            data = json.loads(raw)
        except ValueError:
            return raw, {}  # the upstream answers malformed JSON itself
        if not isinstance(data, dict):
            return raw, {}
        marked = FIELD in data
        question, request_rate, skip = _options(data, rate)
        slot = None if skip else _prompt_slot(path, data)
        new_text, report = None, {}
        if slot is not None:
            async with lock:
                new_text, report = await run_in_threadpool(shorten, slot[0], question or header_question,
                                                           request_rate)
        if new_text is None and not marked:
            return raw, report
        if new_text is not None:
            slot[1](new_text)
        return json.dumps(data, ensure_ascii=False).encode(), report

    async def relay(response: httpx.Response):
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        finally:
            await response.aclose()

    @app.api_route("/{path:path}", methods=METHODS)
    async def proxy(request: Request):
        body = await request.body()
        report = {}
        if request.method == "POST" and request.url.path in PROMPT_PATHS:
            question = request.headers.get(QUESTION_HEADER)
            try:
                body, report = await rewrite(request.url.path, body, unquote(question) if question else None)
            except BadRequest as error:
                return _error(400, str(error), "invalid_request_error")
        headers = [(k, v) for k, v in request.headers.raw
                   if k.lower() not in HOP_BY_HOP and not k.lower().startswith(b"x-compressor-")]
        if not any(k.lower() == b"accept-encoding" for k, _ in headers):
            headers.append((b"accept-encoding", b"identity"))  # else httpx asks for gzip the client never asked for
        target = upstream + request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
        if request.url.query:
            target += "?" + request.url.query
        try:
            response = await client.send(client.build_request(request.method, target, headers=headers, content=body),
                                         stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            return _error(502, f"upstream {upstream} unreachable: {error or type(error).__name__}",
                          "upstream_unreachable")
        except httpx.TransportError as error:
            return _error(502, f"upstream {upstream}: {type(error).__name__} {error}".strip(), "upstream_error")
        out = StreamingResponse(relay(response), status_code=response.status_code)
        out.raw_headers = [(k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP]
        out.raw_headers += [(f"x-compressor-{k}".encode(), str(v).encode()) for k, v in report.items()]
        return out

    return app


def check_upstream(url: str, timeout: float = 5.0) -> None:
    """UserError unless `url` is an http(s) base URL whose GET /v1/models answers 200."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise UserError(f"--upstream {url!r}: not a URL ({error})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UserError(f"--upstream {url!r}: not an http(s) URL like http://127.0.0.1:8001")
    models = f"{url.rstrip('/')}/v1/models"
    try:
        response = httpx.get(models, timeout=timeout)
    except httpx.HTTPError as error:
        raise UserError(f"--upstream {url}: unreachable ({error or type(error).__name__}); start the server "
                        f"first, e.g. `vllm serve MODEL --port 8001`") from None
    if response.status_code != 200:
        raise UserError(f"--upstream {url}: GET {models} answered {response.status_code}; pass the base URL of an "
                        f"OpenAI-compatible server (without /v1)")


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything is printed (port 0: a free one)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sock


def serve(app: FastAPI, sock: socket.socket) -> None:
    import uvicorn

    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
