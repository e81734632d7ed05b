"""A small OpenAI-compatible chat completions server on loopback, for tests that drive a real
client (langchain-openai) over real HTTP. It answers each schema GamED asks for with the JSON
a test gives it, reports the usage the test chose, and can answer with errors first."""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    content: dict
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0


@dataclass
class ChatServer:
    """`replies`: schema name -> Reply; `errors`: (status, message) answered first, in order."""

    model: str
    replies: dict[str, Reply]
    errors: list[tuple[int, str]] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)

    def start(self) -> str:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "headers": dict(self.headers), **body})
                status, payload = server.answer(body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, body: dict) -> tuple[int, dict]:
        if self.errors:
            status, message = self.errors.pop(0)
            kind = "rate_limit_exceeded" if status == 429 else "invalid_request_error"
            return status, {"error": {"message": message, "type": kind, "code": kind}}
        schema = body["response_format"]["json_schema"]["name"]
        reply = self.replies[schema]
        return 200, {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": json.dumps(reply.content),
                        "refusal": None,
                    },
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "total_tokens": reply.prompt_tokens + reply.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
        }
