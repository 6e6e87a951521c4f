"""A stand-in for 2ch.hk on 127.0.0.1: real HTTP, the real API paths, recorded or written JSON.

- `/{board}/catalog.json`: the board's recorded catalog when one is given (entries of the threads
  served here are brought up to date from their JSON: reply count, last-hit time; threads served
  but not in it are added), else a catalog made from the served threads. `catalog=False`: 404.
- `/{board}/threads.json`: a recorded `threads.json` when one is given, else 404.
- `/{board}/res/{num}.json`: the thread's JSON as given (bytes), 404 when not served.

Switches: `fail(path, *faults)` queues faults for the next requests of a path (a status such as
"500" or "403"; "429" comes with Retry-After: 0; "truncate": a 200 whose JSON stops halfway;
"cut": the connection closes mid-body); `etags`
turns ETag / 304 support on or off; `on_request(path)` runs in the handler before it answers
(e.g. to stop a database in the middle of a crawl). Every request is logged with its headers and
its arrival time on `clock` (`time.monotonic` unless a test gives its own), and the most requests
ever in flight at once is kept; `wait_for_requests(n)` returns once n requests have arrived.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_PATH = re.compile(r"^/([a-z0-9_]+)/(catalog\.json|threads\.json|res/([0-9]+)\.json)$")


def listing_entry(thread_json: bytes) -> dict:
    """The listing entry of a thread, as 2ch shows it, made from the thread's own JSON."""
    posts = json.loads(thread_json)["threads"][0]["posts"]
    op = posts[0]
    stamps = [int(p["timestamp"]) for p in posts if str(p.get("timestamp", "")).isdigit()]
    return {
        "num": str(op["num"]),
        "posts_count": len(posts) - 1,
        "lasthit": max(stamps) if stamps else 0,
        "subject": op.get("subject", ""),
        "comment": op.get("comment", "")[:200],
        "timestamp": op.get("timestamp", 0),
    }


@dataclass
class Board:
    threads: dict[int, bytes] = field(default_factory=dict)
    entries: dict[int, dict] = field(default_factory=dict)  # listing entries given, not made
    catalog_file: Path | None = None
    threads_file: Path | None = None
    catalog: bool = True


class DvachServer:
    def __init__(self) -> None:
        self.boards: dict[str, Board] = defaultdict(Board)
        self.etags = True
        self.on_request: Callable[[str], None] | None = None
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.clock: Callable[[], float] = time.monotonic
        self.arrivals: list[float] = []  # self.clock() when each request arrived
        self.max_in_flight = 0
        self._in_flight = 0
        self._faults: dict[str, deque[str]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._httpd: ThreadingHTTPServer | None = None

    # --- content ----------------------------------------------------------------------------

    def serve_thread(
        self, board: str, content: bytes | Path, num: int | None = None, posts_count: int | None = None
    ) -> int:
        """Serve a thread's JSON (a file or bytes) at /{board}/res/{num}.json; returns num.

        With `posts_count` the listing entry is not made from the JSON (which may be broken)."""
        raw = content.read_bytes() if isinstance(content, Path) else content
        if num is None:
            num = int(json.loads(raw)["threads"][0]["posts"][0]["num"])
        with self._lock:
            self.boards[board].threads[num] = raw
            if posts_count is not None:
                self.boards[board].entries[num] = {"num": str(num), "posts_count": posts_count, "lasthit": 1}
        return num

    def remove_thread(self, board: str, num: int) -> None:
        with self._lock:
            del self.boards[board].threads[num]

    def fail(self, path: str, *faults: str) -> None:
        """The next requests of `path` get these faults, one each, in order."""
        with self._lock:
            self._faults[path].extend(faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def wait_for_requests(self, count: int, timeout: float) -> None:
        """Return once `count` requests have arrived in all (raise TimeoutError after `timeout`)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(f"{len(self.requests)} of {count} requests arrived in {timeout} s")

    def paths_requested(self, pattern: str = "") -> list[str]:
        with self._lock:
            return [path for path, _ in self.requests if pattern in path]

    def _catalog(self, board: Board) -> dict:
        served = {num: board.entries.get(num) or listing_entry(raw) for num, raw in board.threads.items()}
        if board.catalog_file is None:
            return {"Board": "", "threads": list(served.values())}
        data = json.loads(board.catalog_file.read_bytes())
        for entry in data["threads"]:
            fresh = served.pop(int(entry["num"]), None)
            if fresh:
                entry.update(posts_count=fresh["posts_count"], lasthit=fresh["lasthit"])
        data["threads"].extend(served.values())
        return data

    def _content(self, path: str) -> bytes | None:
        match = _PATH.match(path)
        if not match:
            return None
        with self._lock:
            board = self.boards.get(match.group(1))
            if board is None:
                return None
            if match.group(2) == "catalog.json":
                return json.dumps(self._catalog(board), ensure_ascii=False).encode() if board.catalog else None
            if match.group(2) == "threads.json":
                return board.threads_file.read_bytes() if board.threads_file else None
            return board.threads.get(int(match.group(3)))

    # --- server -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> DvachServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms stalls

            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict | None = None, declared: int | None = None):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body) if declared is None else declared))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.requests.append((path, dict(self.headers)))
                    server.arrivals.append(server.clock())
                    server._arrived.notify_all()
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                    fault = server._faults[path].popleft() if server._faults[path] else None
                try:
                    if server.on_request is not None:
                        server.on_request(path)
                    self._answer(path, fault)
                finally:
                    with server._lock:
                        server._in_flight -= 1

            def _answer(self, path: str, fault: str | None) -> None:
                if fault == "429":
                    return self._send(429, b"{}", {"Retry-After": "0"})
                if fault and fault.isdigit():
                    return self._send(int(fault), f"<html>{fault}</html>".encode())
                body = server._content(path)
                if body is None:
                    return self._send(404, b'{"Error": -404}')
                if fault in ("truncate", "cut"):  # half the body; "cut" declares all of it and hangs up
                    self.close_connection = fault == "cut"
                    declared = len(body) if fault == "cut" else None
                    return self._send(200, body[: len(body) // 2], declared=declared)
                etag = '"' + hashlib.sha1(body).hexdigest() + '"'
                if server.etags and self.headers.get("If-None-Match") == etag:
                    return self._send(304, b"", {"ETag": etag})
                return self._send(200, body, {"ETag": etag} if server.etags else None)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
