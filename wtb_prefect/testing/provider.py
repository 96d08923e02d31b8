"""A STAND-IN for an OpenAI-compatible chat API, served on 127.0.0.1 for tests and examples.

This is not a language model and not a proxy to one: it is a small local
HTTP server that speaks the OpenAI Chat Completions wire format well enough
for real clients (``langchain_openai.ChatOpenAI(base_url=...)``, the
``openai`` SDK) to talk to it. Machines that run the test suite reach no LLM
API, so the tests and the examples point a real client at this stand-in::

    from langchain_openai import ChatOpenAI
    from wtb_prefect.testing import StandInProvider

    with StandInProvider(latency_s=0.05) as provider:
        llm = ChatOpenAI(base_url=provider.base_url, api_key="stand-in", model="gpt-4o-mini", stream_usage=True)
        llm.invoke("hello")
        provider.requests()  # what it served: time, model, tokens, status

What it does:

- ``POST /v1/chat/completions``, non-streaming and streaming (server-sent
  events; with ``stream_options: {"include_usage": true}`` the last chunk
  carries ``usage`` and no choices, as OpenAI sends it);
- deterministic answers and token counts derived from the request (the same
  request always gets the same answer and the same ``usage``), with
  ``prompt_tokens_details.cached_tokens`` and
  ``completion_tokens_details.reasoning_tokens``;
- tool calls, scripted so that LangGraph's ``create_react_agent`` works: when
  tools are offered and no tool result follows the last user message, it
  calls the first tool; after a tool result it answers. ``tool_mode="always"``
  (for every model, or per model through ``tool_mode_by_model``) calls the
  tool every time, for an agent that never stops;
- a configurable latency before each answer;
- a log of every request it served (:meth:`StandInProvider.requests`) and an
  in-flight counter with the most calls seen at once;
- optional rate limits, enforced as OpenAI does: ``max_in_flight``,
  ``requests_per_minute`` and ``tokens_per_minute`` over a sliding window,
  answered with HTTP 429, an OpenAI-shaped error body and ``Retry-After``.

It runs in a thread of the calling process (the default: the log is read
directly) or in a child process (``in_process=False``: the calling process
keeps its CPU, and the log is read over HTTP from ``/_stand_in/log``).
Standard library only, so it starts in milliseconds anywhere.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["ProviderSettings", "ServedRequest", "StandInProvider", "count_tokens"]

CONTROL_PREFIX = "/_stand_in"
"""Paths under this prefix read the log and change settings; they are not part of the OpenAI API."""


def count_tokens(text: str) -> int:
    """The stand-in's token count of ``text``: one token per four characters, at least one for non-empty text.

    Real tokenizers differ; what matters here is that the count is
    deterministic, so a test can compare what a client booked with what the
    stand-in reported.
    """
    return math.ceil(len(text) / 4) if text else 0


@dataclass
class ProviderSettings:
    """How the stand-in answers; every field can be changed while it runs (:meth:`StandInProvider.configure`).

    Attributes:
        latency_s: seconds to wait before answering each request (after the rate-limit check).
        cached_ratio: the share of the prompt tokens reported as cached (rounded down).
        reasoning_ratio: reasoning tokens reported, as a share of the visible answer's tokens
            (rounded down); they are included in ``completion_tokens``, as OpenAI counts them.
        tool_mode: ``"once"`` (call the first offered tool until a tool result follows the last
            user message, then answer), ``"always"`` (call it every time) or ``"never"``.
        tool_mode_by_model: ``tool_mode`` for particular model names.
        max_in_flight: answer 429 to a request that would exceed this many at once (None: no limit).
        requests_per_minute: answer 429 once this many requests were accepted within ``window_s``.
        tokens_per_minute: answer 429 once the accepted requests' total tokens within ``window_s``
            reach this (a request's tokens are counted when it is accepted).
        window_s: the length of the rate-limit window (a minute as OpenAI counts it; shorter for quick tests).
        retry_after: send a ``Retry-After`` header with each 429.
        fail_next: answer the next this-many requests with HTTP 500 (a provider fault).
    """

    latency_s: float = 0.0
    cached_ratio: float = 0.25
    reasoning_ratio: float = 0.5
    tool_mode: str = "once"
    tool_mode_by_model: dict[str, str] = field(default_factory=dict)
    max_in_flight: int | None = None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    window_s: float = 60.0
    retry_after: bool = True
    fail_next: int = 0

    def __post_init__(self) -> None:
        for mode in [self.tool_mode, *self.tool_mode_by_model.values()]:
            if mode not in {"once", "always", "never"}:
                raise ValueError(f"tool_mode: {mode!r} is not one of 'once', 'always', 'never'")
        for name in ("latency_s", "cached_ratio", "reasoning_ratio", "window_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must not be negative")


@dataclass
class ServedRequest:
    """One request the stand-in answered (429s and faults included).

    Attributes:
        id: the completion id sent back (``chatcmpl-...``), empty for a rejected request.
        started: wall-clock time the request arrived.
        finished: wall-clock time its answer was sent.
        model: the ``model`` of the request.
        status: the HTTP status answered (200, 429, 500).
        stream: whether it was a streaming request.
        prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens: the ``usage``
            reported (0 for a request not answered with 200).
        tool_call: the name of the tool the answer called, if any.
        in_flight: requests in progress when this one arrived, itself included.
        prompt: the last user message, cut to 200 characters (to tell requests apart in a test).
        user: the request's ``user`` field, if any.
    """

    id: str
    started: float
    finished: float
    model: str
    status: int
    stream: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    tool_call: str | None = None
    in_flight: int = 0
    prompt: str = ""
    user: str | None = None

    @property
    def total_tokens(self) -> int:
        """``prompt_tokens + completion_tokens``, as in OpenAI's ``usage``."""
        return self.prompt_tokens + self.completion_tokens


class _RateLimited(Exception):
    def __init__(self, kind: str, limit: int, retry_after: float) -> None:
        self.kind, self.limit, self.retry_after = kind, limit, retry_after
        super().__init__(kind)


class _State:
    """What the server threads share: settings, the log, counters and the rate-limit windows."""

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        self.log: list[ServedRequest] = []
        self.in_flight = 0
        self.max_in_flight_seen = 0
        self._accepted: deque[tuple[float, int]] = deque()  # (time, tokens) of accepted requests in the window

    def enter(self, tokens: int) -> int:
        """Admit one request (raises :class:`_RateLimited`); returns the in-flight count including it."""
        s = self.settings
        with self.lock:
            now = time.monotonic()
            while self._accepted and now - self._accepted[0][0] >= s.window_s:
                self._accepted.popleft()
            if s.max_in_flight is not None and self.in_flight >= s.max_in_flight:
                raise _RateLimited("in_flight", s.max_in_flight, 1.0)
            if s.requests_per_minute is not None and len(self._accepted) >= s.requests_per_minute:
                wait = s.window_s
                if s.requests_per_minute > 0:  # until enough of the window's requests have aged out
                    wait -= now - self._accepted[len(self._accepted) - s.requests_per_minute][0]
                raise _RateLimited("requests", s.requests_per_minute, wait)
            if s.tokens_per_minute is not None:
                used = sum(t for _, t in self._accepted)
                if used and used + tokens > s.tokens_per_minute:
                    raise _RateLimited("tokens", s.tokens_per_minute, s.window_s - (now - self._accepted[0][0]))
            self._accepted.append((now, tokens))
            self.in_flight += 1
            self.max_in_flight_seen = max(self.max_in_flight_seen, self.in_flight)
            return self.in_flight

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def record(self, entry: ServedRequest) -> None:
        with self.lock:
            self.log.append(entry)

    def take_fault(self) -> bool:
        with self.lock:
            if self.settings.fail_next > 0:
                self.settings.fail_next -= 1
                return True
            return False

    def settle(self, settle_s: float = 5.0) -> None:
        """Wait (bounded) until no request is in flight.

        A client gets its last byte before the handler books the request, so a
        reader that does not wait could miss an answer it already holds.
        """
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            with self.lock:
                if self.in_flight == 0:
                    return
            time.sleep(0.005)

    def entries(self) -> list[ServedRequest]:
        """The log once settled (see :meth:`settle`)."""
        self.settle()
        with self.lock:
            return list(self.log)

    def reset(self) -> None:
        self.settle()  # or a request still being booked would land after the clear
        with self.lock:
            self.log.clear()
            self.max_in_flight_seen = self.in_flight
            self._accepted.clear()

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"in_flight": self.in_flight, "max_in_flight_seen": self.max_in_flight_seen, "served": len(self.log)}


# ─── the answers ───


def _text(content: Any) -> str:
    """The text of a message's ``content`` (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def _prompt_tokens(body: Mapping[str, Any]) -> int:
    """Tokens of the request as the stand-in counts them: messages (with overhead), tool calls and tool schemas."""
    total = 3
    for message in body.get("messages") or []:
        total += 3 + count_tokens(_text(message.get("content")))
        for call in message.get("tool_calls") or []:
            fn = call.get("function") or {}
            total += count_tokens(str(fn.get("name", ""))) + count_tokens(str(fn.get("arguments", "")))
    if body.get("tools"):
        total += count_tokens(json.dumps(body["tools"], sort_keys=True))
    return total


def _last_user(messages: list[dict[str, Any]]) -> tuple[int, str]:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i, _text(messages[i].get("content"))
    return -1, ""


def _arguments(tool: Mapping[str, Any], prompt: str) -> dict[str, Any]:
    """Arguments for a tool call that fit the tool's JSON schema, derived from the prompt."""
    params = (tool.get("function") or {}).get("parameters") or {}
    props = params.get("properties") or {}
    args: dict[str, Any] = {}
    for name in params.get("required") or list(props):
        kind = (props.get(name) or {}).get("type", "string")
        if kind == "integer":
            args[name] = len(prompt)
        elif kind == "number":
            args[name] = float(len(prompt))
        elif kind == "boolean":
            args[name] = True
        elif kind == "array":
            args[name] = prompt.split()[:3]
        elif kind == "object":
            args[name] = {}
        else:
            args[name] = prompt[:80] or name
    return args


@dataclass
class _Answer:
    content: str
    tool_call: dict[str, Any] | None
    usage: dict[str, Any]
    prompt: str


def answer(body: Mapping[str, Any], settings: ProviderSettings) -> _Answer:
    """The stand-in's deterministic answer to a chat completion request."""
    messages = list(body.get("messages") or [])
    model = str(body.get("model", ""))
    user_at, prompt = _last_user(messages)
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode()).hexdigest()
    tools = body.get("tools") or []
    mode = settings.tool_mode_by_model.get(model, settings.tool_mode)
    if body.get("tool_choice") == "none":
        mode = "never"
    tool_result = [m for m in messages[user_at + 1 :] if m.get("role") == "tool"]
    tool_call = None
    content = ""
    if tools and (mode == "always" or (mode == "once" and not tool_result)):
        tool = tools[0]
        tool_call = {
            "id": f"call_{digest[:24]}",
            "type": "function",
            "function": {
                "name": (tool.get("function") or {}).get("name", "tool"),
                "arguments": json.dumps(_arguments(tool, prompt), sort_keys=True),
            },
        }
        visible = count_tokens(tool_call["function"]["name"]) + count_tokens(tool_call["function"]["arguments"])
    else:
        seen = f" using {_text(tool_result[-1].get('content'))[:80]}" if tool_result else ""
        content = f"Stand-in answer {digest[:8]} to: {prompt[:120]}{seen}"
        visible = count_tokens(content)
    prompt_tokens = _prompt_tokens(body)
    reasoning = int(visible * settings.reasoning_ratio)
    cached = int(prompt_tokens * settings.cached_ratio)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": visible + reasoning,
        "total_tokens": prompt_tokens + visible + reasoning,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    return _Answer(content=content, tool_call=tool_call, usage=usage, prompt=prompt[:200])


# ─── the HTTP side ───


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients pool connections
    server_version = "wtb-stand-in/1"
    timeout = 120  # an idle keep-alive connection frees its thread after this

    @property
    def state(self) -> _State:
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the request log is the record
        pass

    def _json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        return json.loads(raw or b"{}")

    def do_GET(self) -> None:
        if self.path == f"{CONTROL_PREFIX}/log":
            self._json(200, [asdict(e) for e in self.state.entries()])
        elif self.path == f"{CONTROL_PREFIX}/stats":
            self._json(200, self.state.stats())
        elif self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": "stand-in", "object": "model", "owned_by": "wtb"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        try:
            body = self._read_body()
        except (ValueError, json.JSONDecodeError) as exc:
            self._json(400, {"error": {"message": f"invalid JSON body: {exc}", "type": "invalid_request_error"}})
            return
        if self.path == f"{CONTROL_PREFIX}/reset":
            self.state.reset()
            self._json(200, {"ok": True})
        elif self.path == f"{CONTROL_PREFIX}/configure":
            try:
                _apply(self.state, body)
            except (TypeError, ValueError) as exc:
                self._json(400, {"error": {"message": str(exc)}})
                return
            self._json(200, asdict(self.state.settings))
        elif self.path.rstrip("/") == "/v1/chat/completions":
            self._chat(body)
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})

    def _chat(self, body: dict[str, Any]) -> None:
        state, settings = self.state, self.state.settings
        started = time.time()
        model = str(body.get("model", ""))
        stream = bool(body.get("stream"))
        if not body.get("messages"):
            self._json(400, {"error": {"message": "messages: required", "type": "invalid_request_error"}})
            return
        reply = answer(body, settings)
        entry = ServedRequest(
            id="", started=started, finished=0.0, model=model, status=200, stream=stream,
            prompt=reply.prompt, user=body.get("user"),
        )  # fmt: skip
        try:
            entry.in_flight = state.enter(reply.usage["total_tokens"])
        except _RateLimited as limited:
            entry.status, entry.finished = 429, time.time()
            state.record(entry)
            headers = {
                f"x-ratelimit-limit-{limited.kind}": str(limited.limit),
                f"x-ratelimit-remaining-{limited.kind}": "0",
            }
            if settings.retry_after:
                headers["Retry-After"] = str(max(1, math.ceil(limited.retry_after)))
            message = f"Rate limit reached for {model} (stand-in) on {limited.kind}: limit {limited.limit}"
            self._json(429, {"error": {"message": message, "type": limited.kind, "param": None,
                                       "code": "rate_limit_exceeded"}}, headers)  # fmt: skip
            return
        try:
            if settings.latency_s:
                time.sleep(settings.latency_s)
            if state.take_fault():
                entry.status = 500
                self._json(500, {"error": {"message": "stand-in fault (fail_next)", "type": "server_error"}})
                return
            entry.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
            usage = reply.usage
            entry.prompt_tokens, entry.completion_tokens = usage["prompt_tokens"], usage["completion_tokens"]
            entry.cached_tokens = usage["prompt_tokens_details"]["cached_tokens"]
            entry.reasoning_tokens = usage["completion_tokens_details"]["reasoning_tokens"]
            entry.tool_call = reply.tool_call["function"]["name"] if reply.tool_call else None
            if stream:
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                self._stream(entry.id, model, reply, include_usage)
            else:
                self._json(200, _completion(entry.id, model, reply))
        finally:
            # Booked before it stops counting as in flight, so reset() (which waits
            # for in-flight requests to finish) never misses or keeps a stale entry.
            entry.finished = time.time()
            state.record(entry)
            state.leave()

    def _stream(self, cid: str, model: str, reply: _Answer, include_usage: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        created = int(time.time())
        extra = {"usage": None} if include_usage else {}

        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "system_fingerprint": "fp_stand_in", "choices": [choice], **extra}  # fmt: skip

        events = [chunk({"role": "assistant", "content": ""}, None)]
        if reply.tool_call:
            call = reply.tool_call
            events.append(chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                                 "function": {"name": call["function"]["name"], "arguments": ""}}]},
                                None))  # fmt: skip
            events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": call["function"]["arguments"]}}]},
                                None))  # fmt: skip
            events.append(chunk({}, "tool_calls"))
        else:
            words = reply.content.split(" ")
            for i, word in enumerate(words):
                events.append(chunk({"content": word if i == 0 else " " + word}, None))
            events.append(chunk({}, "stop"))
        if include_usage:
            events.append({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                           "system_fingerprint": "fp_stand_in", "choices": [], "usage": reply.usage})  # fmt: skip
        for event in events:
            self._send_chunk(f"data: {json.dumps(event)}\n\n".encode())
        self._send_chunk(b"data: [DONE]\n\n")
        self._send_chunk(b"")

    def _send_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _completion(cid: str, model: str, reply: _Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content or None, "refusal": None}
    if reply.tool_call:
        message["tool_calls"] = [reply.tool_call]
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_stand_in",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if reply.tool_call else "stop",
            }
        ],
        "usage": reply.usage,
    }


def _apply(state: _State, changes: Mapping[str, Any]) -> None:
    """Change settings of a running stand-in (validated as a whole before any is applied)."""
    known = set(ProviderSettings.__dataclass_fields__)
    unknown = set(changes) - known
    if unknown:
        raise TypeError(f"unknown stand-in setting(s) {sorted(unknown)}; known: {sorted(known)}")
    merged = ProviderSettings(**{**asdict(state.settings), **changes})
    with state.lock:
        state.settings = merged


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # many clients connect at once; the default backlog of 5 drops connections
    allow_reuse_address = True

    def __init__(self, state: _State) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client closing its pooled connection is normal; anything else is a stand-in bug worth seeing
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class StandInProvider:
    """A running stand-in OpenAI-compatible provider on 127.0.0.1 (a context manager).

    Args:
        in_process: serve from a thread of this process (True) or a child process (False).
        **settings: :class:`ProviderSettings` fields (``latency_s``, ``tool_mode``,
            ``requests_per_minute``, ...).

    Attributes:
        base_url: ``http://127.0.0.1:<port>/v1``, the ``base_url`` to give an OpenAI client.
        port: the free port it took.
    """

    def __init__(self, *, in_process: bool = True, **settings: Any) -> None:
        self._settings = ProviderSettings(**settings)
        self._in_process = in_process
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        """The OpenAI ``base_url`` of this provider."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> StandInProvider:
        """Start serving (the context manager calls this)."""
        if self._in_process:
            self._server = _Server(_State(self._settings))
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(target=self._server.serve_forever, name="wtb-stand-in", daemon=True)
            self._thread.start()
        else:
            code = "from wtb_prefect.testing.provider import main; main()"
            args = [sys.executable, "-c", code, "--settings", json.dumps(asdict(self._settings))]
            self._process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
            line = self._process.stdout.readline() if self._process.stdout else ""
            if not line.startswith("port "):
                self.stop()
                raise RuntimeError(f"the stand-in provider process did not start (said {line!r})")
            self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        """Stop serving (the context manager calls this)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
            if self._process.stdout:
                self._process.stdout.close()
            self._process = None

    def __enter__(self) -> StandInProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _control(self, path: str, payload: Mapping[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{CONTROL_PREFIX}/{path}", data=data)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def requests(self) -> list[ServedRequest]:
        """Every request served so far (429s and faults included), in the order they finished."""
        if self._server is not None:
            return self._server.state.entries()
        return [ServedRequest(**e) for e in self._control("log")]

    def stats(self) -> dict[str, Any]:
        """``in_flight`` now, ``max_in_flight_seen`` since start or reset, ``served`` so far."""
        if self._server is not None:
            return self._server.state.stats()
        return self._control("stats")

    @property
    def max_in_flight_seen(self) -> int:
        """The most requests the provider held at once since start or :meth:`reset`."""
        return int(self.stats()["max_in_flight_seen"])

    def reset(self) -> None:
        """Forget the log, the rate-limit windows and the in-flight maximum (settings stay)."""
        if self._server is not None:
            self._server.state.reset()
        else:
            self._control("reset", {})

    def configure(self, **changes: Any) -> None:
        """Change settings while running (e.g. ``configure(requests_per_minute=60)``)."""
        if self._server is not None:
            _apply(self._server.state, changes)
        else:
            self._control("configure", changes)

    def usage_by_model(self, *, status: int = 200) -> dict[str, dict[str, int]]:
        """Tokens the provider reported, summed per model, in the shape of :mod:`wtb_prefect.worker.usage`."""
        out: dict[str, dict[str, int]] = {}
        for e in self.requests():
            if e.status != status:
                continue
            row = out.setdefault(e.model, {"input": 0, "output": 0, "cache_read": 0, "reasoning": 0, "calls": 0})
            row["input"] += e.prompt_tokens
            row["output"] += e.completion_tokens
            row["cache_read"] += e.cached_tokens
            row["reasoning"] += e.reasoning_tokens
            row["calls"] += 1
        return out


def main(argv: list[str] | None = None) -> None:
    """Serve a stand-in provider until terminated; prints ``port <n>`` once it listens."""
    parser = argparse.ArgumentParser(description="A stand-in OpenAI-compatible provider on 127.0.0.1 (for tests).")
    parser.add_argument("--settings", default="{}", help="ProviderSettings fields as JSON")
    ns = parser.parse_args(argv)
    server = _Server(_State(ProviderSettings(**json.loads(ns.settings))))
    print(f"port {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
