"""A scripted OpenAI-compatible server on loopback, shared by the tests.

It speaks the chat-completions JSON shape over real HTTP, so the real ``openai`` client code runs against
it. ``script`` gives replies in order (the last repeats); ``responder`` answers from the request instead.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    content: str = "SELECT COUNT(*) FROM t"
    headers: dict[str, str] = field(default_factory=dict)
    error: str = "scripted failure"
    delay: float = 0.0
    usage: bool = True


class FakeOpenAI:
    """A scripted OpenAI-compatible server on 127.0.0.1. The last reply of the script repeats."""

    def __init__(self) -> None:
        self.script: list[Reply] = [Reply()]
        self.responder: Callable[[dict[str, Any]], Reply] | None = None
        self.requests: list[dict[str, Any]] = []
        self.inflight = 0
        self.max_inflight = 0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with fake._lock:
                    reply = (fake.responder(body) if fake.responder is not None
                             else fake.script[min(len(fake.requests), len(fake.script) - 1)])
                    fake.requests.append({"path": self.path, "headers": dict(self.headers), "json": body})
                    fake.inflight += 1
                    fake.max_inflight = max(fake.max_inflight, fake.inflight)
                time.sleep(reply.delay)
                with fake._lock:  # leave before answering, so the client cannot overlap us by accident
                    fake.inflight -= 1
                if reply.status == 200:
                    payload: dict[str, Any] = {
                        "id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                        "model": body.get("model", "?"),
                        "choices": [{"index": i, "finish_reason": "stop",  # ``n`` choices when asked
                                     "message": {"role": "assistant", "content": reply.content}}
                                    for i in range(int(body.get("n") or 1))]}
                    if reply.usage:
                        payload["usage"] = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
                else:
                    payload = {"error": {"message": reply.error, "type": "test", "code": None}}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
