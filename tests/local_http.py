"""A loopback HTTP file server for network-behaviour tests: byte ranges (what GDAL's /vsicurl/ asks for),
recorded request headers, and injected transient failures. Only 127.0.0.1; no outside network."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FileServer:
    """Serves files under ``root`` at ``url``; ``fail(path, n, status)`` makes the next ``n`` requests for
    ``path`` answer ``status`` (``n < 0``: every request)."""

    root: Path
    url: str = ""
    requests: list[Request] = field(default_factory=list)
    failures: dict[str, list[int]] = field(default_factory=dict)  # path -> [remaining, status]
    handler: Callable[[http.server.BaseHTTPRequestHandler], bool] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, path: str, times: int, status: int = 503) -> None:
        with self.lock:
            self.failures[path] = [times, status]

    def hits(self, path: str | None = None) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if path is None or r.path.split("?")[0] == path]


def _handler_class(server: FileServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def _failure(self, path: str) -> int | None:
            with server.lock:
                server.requests.append(Request(self.command, self.path, dict(self.headers.items())))
                rule = server.failures.get(path)
                if rule is None or rule[0] == 0:
                    return None
                if rule[0] > 0:
                    rule[0] -= 1
                return rule[1]

        def _serve(self, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            status = self._failure(path)
            if server.handler is not None and server.handler(self):
                return
            if status is not None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.send_header("Retry-After", "0")
                self.end_headers()
                return
            file = (server.root / path.lstrip("/")).resolve()
            if not file.is_file() or server.root.resolve() not in file.parents:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = file.read_bytes()
            start, end = 0, len(data) - 1
            ranged = self.headers.get("Range", "")
            if ranged.startswith("bytes="):
                first, _, last = ranged[6:].split(",")[0].partition("-")
                start = int(first)
                end = min(int(last), len(data) - 1) if last else len(data) - 1
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "image/tiff")
            self.send_header("Content-Length", str(end - start + 1))
            self.end_headers()
            if body:
                self.wfile.write(data[start : end + 1])

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

    return Handler


@contextlib.contextmanager
def serve_files(root: Path) -> Iterator[FileServer]:
    """Run a :class:`FileServer` for ``root`` on a free loopback port for the duration of the block."""
    server = FileServer(Path(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(server))
    httpd.daemon_threads = True
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, name="test-file-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
