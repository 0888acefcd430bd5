"""The fake OpenAI-compatible LLM upstream's aiohttp app (run it with `tests.fake_upstream`).

Deterministic answers:
- Tokens are whitespace-separated words. Chat `prompt_tokens` = words in every message's text
  content; completions `prompt_tokens` = words of string prompts (or length of token-id
  lists); embeddings `prompt_tokens` = words (or token ids) of every input.
- The reply is `echo:` followed by the first 16 words of the last user message (the last
  prompt for /v1/completions), repeated until it is `max_tokens` (or
  `max_completion_tokens`) words long, 8 words when neither is given. `completion_tokens` is
  that word count; every one of the `n` choices carries the same text; `finish_reason` "stop".
- Streams send a role chunk, one chunk per word, a chunk with the finish reason, then (with
  `stream_options.include_usage`) a `choices: []` chunk carrying usage, then `data: [DONE]`.
- Embeddings are a unit vector derived from a BLAKE2b hash of each input; 8 dimensions or
  `dimensions`; `encoding_format: base64` yields little-endian float32, as OpenAI does.
- `--litellm-cost` adds `x-litellm-response-cost` (1e-6 USD per prompt token, 2e-6 USD per
  completion token) to completion and embedding responses.

Faults, on POST /v1/chat/completions, /v1/completions and /v1/embeddings only:
- By model name (concurrent tests stay independent): `fault-500`, `fault-502`, `fault-503`,
  `fault-429`, `fault-400`,
  `fault-slow` (waits AICC_FAKE_SLOW_S, default 2 s, then answers), `fault-reset` (aborts the
  TCP connection, no response), `fault-malformed` (200 with a body that is not JSON; a stream
  gets events that are not JSON), `fault-broken-sse` (3 chunks then an aborted connection; without
  `stream` a truncated JSON body then the abort), `fault-slow-chunk` (first chunk, a pause of
  AICC_FAKE_CHUNK_PAUSE_S, default 0.5 s, then the rest; without `stream` the pause then the
  answer), `fault-slow-stream` (every chunk 5 ms after the previous one, like a real model).
- By `POST /_control/fault {"mode": "500", "count": N|null}` for the next N requests of any
  model (null: until reset); modes are the names above with or without `fault-`.
  `POST /_control/reset` clears faults and stats; `GET /_control/stats` returns `total`,
  `llm_calls`, `by_path` and `recent` (the last 50 requests: method, path, selected headers,
  parsed JSON body). /_control/* requests are not counted. Every completion answer sets an
  affinity cookie, as a load balancer would.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import itertools
import os
import struct
import time
from typing import Any

import orjson
from aiohttp import web

MODEL_IDS = ("gpt-4o-mini", "gpt-4o", "llama3-local", "text-embedding-3-small")
FAULT_MODES = (
    "500", "502", "503", "429", "400", "slow", "reset", "malformed", "broken-sse", "slow-chunk",
    "slow-stream",
)  # fmt: skip
SLOW_STREAM_CHUNK_S = 0.005
RECORDED_HEADERS = ("authorization", "x-correlation-id", "content-type", "cookie")
# Every answer sets one, as a load balancer with session affinity does; a gateway must not
# carry it into other requests (other tenants' requests included).
_AFFINITY_COOKIE = {"Set-Cookie": "upstream_affinity=replica-1; Path=/"}
RECENT_LIMIT = 50
DEFAULT_REPLY_WORDS = 8
ECHO_WORDS = 16
MAX_REPLY_WORDS = 16_384
DEFAULT_DIMENSIONS = 8
PROMPT_COST_USD = 1e-6
COMPLETION_COST_USD = 2e-6
_CREATED = 1_700_000_000
_LLM_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})
_JSON = "application/json"
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_ERRORS = {
    "500": ("The server had an error while processing your request.", "server_error", None),
    "502": ("Bad gateway (injected).", "server_error", None),
    "503": ("The engine is currently overloaded (injected).", "server_error", None),
    "429": ("Rate limit reached for requests (injected).", "requests", "rate_limit_exceeded"),
    "400": ("Bad request (injected).", "invalid_request_error", None),
}


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _error(
    status: int, message: str, kind: str, param: str | None, code: str | None
) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.Response(status=status, body=orjson.dumps(body), content_type=_JSON)


def _model_not_found(model: Any) -> web.Response:
    message = f"The model `{model}` does not exist or you do not have access to it."
    return _error(404, message, "invalid_request_error", "model", "model_not_found")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only text parts count
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _reply_words(source_text: str, body: dict[str, Any]) -> list[str]:
    count = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_REPLY_WORDS
    if not isinstance(count, int) or count < 1:
        raise _BadRequest("max_tokens must be a positive integer", "max_tokens")
    source = ["echo:", *source_text.split()[:ECHO_WORDS]]
    return list(itertools.islice(itertools.cycle(source), min(count, MAX_REPLY_WORDS)))


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _embedding(text: str, dimensions: int) -> list[float]:
    digest = b""
    counter = 0
    while len(digest) < dimensions:
        digest += hashlib.blake2b(f"{counter}:{text}".encode(), digest_size=64).digest()
        counter += 1
    raw = [b / 127.5 - 1.0 for b in digest[:dimensions]]
    norm = sum(v * v for v in raw) ** 0.5 or 1.0
    return [v / norm for v in raw]


class _FakeLLM:
    def __init__(self, *, litellm_cost: bool, slow_s: float, chunk_pause_s: float) -> None:
        self.litellm_cost = litellm_cost
        self.slow_s = slow_s
        self.chunk_pause_s = chunk_pause_s
        self.model_ids = frozenset(MODEL_IDS)
        self.fault_mode: str | None = None
        self.fault_remaining: int | None = None
        self.serial = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        self.fault_mode = None
        self.fault_remaining = None
        self.total = 0
        self.llm_calls = 0
        self.by_path: collections.Counter[str] = collections.Counter()
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_LIMIT)

    def record(self, request: web.Request, body: Any) -> None:
        path = request.path
        self.total += 1
        self.by_path[path] += 1
        if path in _LLM_PATHS:
            self.llm_calls += 1
        headers = {h: request.headers[h] for h in RECORDED_HEADERS if h in request.headers}
        self.recent.append(
            {"method": request.method, "path": path, "headers": headers, "body": body}
        )

    def take_fault(self, model: Any) -> str | None:
        if isinstance(model, str) and model.startswith("fault-"):
            return model[6:]
        if self.fault_mode is None:
            return None
        mode = self.fault_mode
        if self.fault_remaining is not None:
            self.fault_remaining -= 1
            if self.fault_remaining <= 0:
                self.fault_mode = self.fault_remaining = None
        return mode

    def cost_headers(self, usage: dict[str, int]) -> dict[str, str]:
        if not self.litellm_cost:
            return {}
        cost = (
            usage["prompt_tokens"] * PROMPT_COST_USD
            + usage.get("completion_tokens", 0) * COMPLETION_COST_USD
        )
        return {"x-litellm-response-cost": repr(cost)}

    # --- LLM endpoints ------------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self._chat_answer)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self._text_answer)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, self._embeddings_answer)

    async def _serve(self, request: web.Request, answer: Any) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            self.record(request, None)
            return _error(400, "We could not parse the JSON body.", "invalid_request_error",
                          None, None)  # fmt: skip
        self.record(request, body)
        if not isinstance(body, dict):
            return _error(400, "The body must be a JSON object.", "invalid_request_error",
                          None, None)  # fmt: skip
        model = body.get("model")
        fault = self.take_fault(model)
        if fault is None and model not in self.model_ids:
            return _model_not_found(model)
        try:
            return await answer(request, body, fault)
        except _BadRequest as exc:
            return _error(400, str(exc), "invalid_request_error", exc.param, None)

    async def _fault_before_answer(
        self, request: web.Request, fault: str | None
    ) -> web.Response | None:
        """Handle faults that replace or delay the answer; None means: answer now."""
        if fault in _ERRORS:
            message, kind, code = _ERRORS[fault]
            return _error(int(fault), message, kind, None, code)
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        elif fault == "reset":
            _abort(request)
            return web.Response(status=500)  # never reaches the client: the socket is gone
        elif fault == "slow-chunk" and not _is_stream(request):
            await asyncio.sleep(self.chunk_pause_s)
        elif fault not in (None, "malformed", "broken-sse", "slow-chunk", "slow-stream"):
            return _error(400, f"Unknown fault mode {fault!r}.", "invalid_request_error",
                          "model", None)  # fmt: skip
        return None

    async def _chat_answer(
        self, request: web.Request, body: dict[str, Any], fault: str | None
    ) -> web.StreamResponse:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _BadRequest("messages must be a non-empty array", "messages")
        messages = [m for m in messages if isinstance(m, dict)]
        prompt_tokens = sum(len(_text_of(m.get("content")).split()) for m in messages)
        users = [m for m in messages if m.get("role") == "user"]
        source = _text_of(users[-1].get("content")) if users else ""
        return await self._complete(request, body, fault, prompt_tokens, source, chat=True)

    async def _text_answer(
        self, request: web.Request, body: dict[str, Any], fault: str | None
    ) -> web.StreamResponse:
        prompt = body.get("prompt")
        is_many = isinstance(prompt, list) and prompt and not isinstance(prompt[0], int)
        prompts = prompt if is_many else [prompt]
        if not all(isinstance(p, str | list) for p in prompts):
            raise _BadRequest("prompt must be a string or an array", "prompt")
        prompt_tokens = sum(len(p.split()) if isinstance(p, str) else len(p) for p in prompts)
        source = prompts[-1] if isinstance(prompts[-1], str) else ""
        return await self._complete(request, body, fault, prompt_tokens, source, chat=False)

    async def _complete(
        self, request: web.Request, body: dict[str, Any], fault: str | None,
        prompt_tokens: int, source: str, *, chat: bool,
    ) -> web.StreamResponse:  # fmt: skip
        words = _reply_words(source, body)
        n = _choice_count(body)
        request["stream"] = bool(body.get("stream"))
        if (early := await self._fault_before_answer(request, fault)) is not None:
            return early
        usage = _usage(prompt_tokens, len(words))
        head = {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-fake{next(self.serial)}",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": None,
        }
        if request["stream"]:
            chunks = [
                _choice_chunk(head, i, text, None, chat=chat)
                for text in _chunk_texts(words, chat=chat)
                for i in range(n)
            ]
            chunks.extend(_choice_chunk(head, i, None, "stop", chat=chat) for i in range(n))
            return await self._stream(request, body, head, chunks, usage, fault)
        text = " ".join(words)
        if chat:
            message = {"role": "assistant", "content": text, "refusal": None}
            choices = [{"index": i, "message": message, "logprobs": None, "finish_reason": "stop"}
                       for i in range(n)]  # fmt: skip
        else:
            choices = [{"index": i, "text": text, "logprobs": None, "finish_reason": "stop"}
                       for i in range(n)]  # fmt: skip
        object_name = "chat.completion" if chat else "text_completion"
        payload = {**head, "object": object_name, "choices": choices, "usage": usage}
        return await self._json(request, payload, usage, fault)

    async def _embeddings_answer(
        self, request: web.Request, body: dict[str, Any], fault: str | None
    ) -> web.StreamResponse:
        raw = body.get("input")
        inputs = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
        if not all(isinstance(i, str | list) for i in inputs):
            raise _BadRequest("input must be a string or an array", "input")
        dimensions = body.get("dimensions") or DEFAULT_DIMENSIONS
        if not isinstance(dimensions, int) or not 1 <= dimensions <= 4096:
            raise _BadRequest("dimensions must be an integer between 1 and 4096", "dimensions")
        if (early := await self._fault_before_answer(request, fault)) is not None:
            return early
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(inputs):
            vector = _embedding(item if isinstance(item, str) else repr(item), dimensions)
            encoded: Any = vector
            if as_base64:
                encoded = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        prompt_tokens = sum(len(i.split()) if isinstance(i, str) else len(i) for i in inputs)
        usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
        payload = {"object": "list", "data": data, "model": body["model"], "usage": usage}
        return await self._json(request, payload, usage, fault)

    async def _json(
        self,
        request: web.Request,
        payload: dict[str, Any],
        usage: dict[str, int],
        fault: str | None,
    ) -> web.StreamResponse:
        encoded = orjson.dumps(payload)
        headers = {**self.cost_headers(usage), **_AFFINITY_COOKIE}
        if fault == "malformed":
            encoded = encoded[: len(encoded) // 2] + b"<<not json"
        elif fault == "broken-sse":
            # Promise the whole body, send half of it, then drop the connection.
            response = web.StreamResponse(headers=headers)
            response.content_type, response.content_length = _JSON, len(encoded)
            await response.prepare(request)
            await response.write(encoded[: len(encoded) // 2])
            await response.drain()
            _abort(request)
            return response
        return web.Response(body=encoded, content_type=_JSON, headers=headers)

    async def _stream(
        self, request: web.Request, body: dict[str, Any], head: dict[str, Any],
        chunks: list[dict[str, Any]], usage: dict[str, int], fault: str | None,
    ) -> web.StreamResponse:  # fmt: skip
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if include_usage:
            # OpenAI sends `usage: null` on every chunk, then one chunk with no choices.
            for chunk in chunks:
                chunk["usage"] = None
            chunks.append({**head, "choices": [], "usage": usage})
        response = web.StreamResponse(
            headers={**_SSE_HEADERS, **self.cost_headers(usage), **_AFFINITY_COOKIE}
        )
        await response.prepare(request)
        try:
            for position, chunk in enumerate(chunks):
                if fault == "broken-sse" and position == 3:
                    await response.drain()
                    _abort(request)
                    return response
                if fault == "slow-stream":
                    # Like a real model: tokens trickle out, so a client can leave mid-way.
                    await asyncio.sleep(SLOW_STREAM_CHUNK_S)
                if fault == "slow-chunk":
                    if position == 1:
                        await asyncio.sleep(self.chunk_pause_s)
                    # Lets a test measure how long a chunk took from here to the client.
                    chunk["x_fake_sent_at"] = time.time()
                data = b"{not json" if fault == "malformed" else orjson.dumps(chunk)
                await response.write(b"data: " + data + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away mid-stream; nothing left to do
        return response

    # --- catalogue, health, control -------------------------------------------------------------

    async def models(self, request: web.Request) -> web.Response:
        self.record(request, None)
        data = [_model_card(m) for m in MODEL_IDS]
        return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type=_JSON)

    async def model(self, request: web.Request) -> web.Response:
        self.record(request, None)
        model_id = request.match_info["model_id"]
        if model_id not in self.model_ids:
            return _model_not_found(model_id)
        return web.Response(body=orjson.dumps(_model_card(model_id)), content_type=_JSON)

    async def liveness(self, request: web.Request) -> web.Response:
        self.record(request, None)
        return web.Response(text="I'm alive!")

    async def control_fault(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        mode = str(body.get("mode", "")).removeprefix("fault-")
        count = body.get("count")
        if mode not in FAULT_MODES or not (count is None or (isinstance(count, int) and count > 0)):
            return _error(400, f"mode must be one of {FAULT_MODES}, count a positive int or null",
                          "invalid_request_error", "mode", None)  # fmt: skip
        self.fault_mode, self.fault_remaining = mode, count
        return web.Response(body=orjson.dumps({"mode": mode, "count": count}), content_type=_JSON)

    async def control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.Response(body=b'{"reset":true}', content_type=_JSON)

    async def control_stats(self, request: web.Request) -> web.Response:
        stats = {
            "total": self.total,
            "llm_calls": self.llm_calls,
            "by_path": dict(self.by_path),
            "recent": list(self.recent),
            "fault": {"mode": self.fault_mode, "remaining": self.fault_remaining},
        }
        return web.Response(body=orjson.dumps(stats), content_type=_JSON)


def _chunk_texts(words: list[str], *, chat: bool) -> list[str]:
    texts = [words[0], *(" " + word for word in words[1:])]
    return ["", *texts] if chat else texts  # a chat stream opens with the assistant role


def _choice_chunk(
    head: dict[str, Any], index: int, text: str | None, finish: str | None, *, chat: bool
) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": index, "logprobs": None, "finish_reason": finish}
    if not chat:
        choice["text"] = text or ""
    elif text is None:
        choice["delta"] = {}
    else:
        choice["delta"] = {"content": text} if text else {"role": "assistant", "content": ""}
    return {**head, "choices": [choice]}


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


def _is_stream(request: web.Request) -> bool:
    return bool(request.get("stream"))


def _choice_count(body: dict[str, Any]) -> int:
    n = body.get("n") or 1
    if not isinstance(n, int) or not 1 <= n <= 16:
        raise _BadRequest("n must be an integer between 1 and 16", "n")
    return n


def _model_card(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": _CREATED, "owned_by": "aicc-fake"}


def make_app(
    *, litellm_cost: bool = False, slow_s: float | None = None, chunk_pause_s: float | None = None
) -> web.Application:
    """Build the fake upstream app; unset timings come from AICC_FAKE_SLOW_S / _CHUNK_PAUSE_S."""
    fake = _FakeLLM(
        litellm_cost=litellm_cost,
        slow_s=slow_s if slow_s is not None else float(os.environ.get("AICC_FAKE_SLOW_S", "2")),
        chunk_pause_s=(
            chunk_pause_s if chunk_pause_s is not None
            else float(os.environ.get("AICC_FAKE_CHUNK_PAUSE_S", "0.5"))
        ),
    )  # fmt: skip
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", fake.chat)
    app.router.add_post("/v1/completions", fake.completions)
    app.router.add_post("/v1/embeddings", fake.embeddings)
    app.router.add_get("/v1/models", fake.models)
    app.router.add_get("/v1/models/{model_id}", fake.model)
    app.router.add_get("/health/liveliness", fake.liveness)
    app.router.add_get("/health/liveness", fake.liveness)
    app.router.add_post("/_control/fault", fake.control_fault)
    app.router.add_post("/_control/reset", fake.control_reset)
    app.router.add_get("/_control/stats", fake.control_stats)
    return app
