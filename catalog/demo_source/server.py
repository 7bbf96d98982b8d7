"""The demo Douban's HTTP server, on a loopback address only (a `ThreadingHTTPServer` in a
thread of its own):

    GET /j/search_subjects?type=movie|tv&tag=最新&page_limit=N&page_start=K   the newest list (JSON)
    GET /subject/<id>/                                                        a subject page (HTML)
    GET /view/photo/s_ratio_poster/public/p<id>.png                           its cover (PNG)
    GET /                                                                     what this server is

Everything else is a 404. `type`, `page_limit` and `page_start` that are not what Douban takes
are a 400 naming the parameter; a tag other than 最新 lists nothing, as Douban lists nothing for
a tag it does not have. Pages and covers point at this server's own root (`root`), so a sync
of `CATALOG_DOUBAN_ROOT=<root>` fetches everything from here; each cover is drawn on its first
request and kept.

    with DemoDouban(port=0) as demo:      # port 0: a free one
        demo.root                         # "http://127.0.0.1:40123"
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from catalog.demo_source import content
from catalog.demo_source.covers import cover_png
from catalog.demo_source.pages import Subject, render_subject

LIST_PATH = "/j/search_subjects"
NEWEST_TAG = "最新"
PAGE_LIMIT_MAX = 500
_SUBJECT = re.compile(r"^/subject/(\d{1,12})/?$")
_COVER = re.compile(r"^" + re.escape(content.COVER_PATH).replace(re.escape("{source_id}"), r"(\d{1,12})") + r"$")


class NotLoopback(ValueError):
    """The demo server listens on this machine only."""


def check_loopback(host: str) -> None:
    """NotLoopback unless `host` is localhost or a loopback address."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise NotLoopback(f"the demo Douban listens on a loopback address only (127.0.0.1, ::1), not {host!r}")


class DemoDouban:
    """The server. `start()` / `stop()` (or `with`); `root` is where it answers."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        check_loopback(host)
        self.host, self.port = host, port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._covers: dict[str, bytes] = {}
        self._covers_lock = threading.Lock()

    @property
    def root(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        """Listen (OSError when the port is taken) and answer in a background thread."""
        self._httpd = _Server(self, (self.host, self.port))
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="DemoDouban", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- what it serves -------------------------------------------------------------------

    @functools.cached_property
    def subjects(self) -> list[Subject]:
        """Newest first, with covers on this server (known once it listens)."""
        return content.subjects(origin=self.root)

    @functools.cached_property
    def _by_id(self) -> dict[str, Subject]:
        return {subject.source_id: subject for subject in self.subjects}

    def answer(self, path: str, query: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of `path?query`."""
        if path == LIST_PATH:
            return self._list(dict(parse_qsl(query, keep_blank_values=True)))
        if match := _SUBJECT.match(path):
            subject = self._by_id.get(match.group(1))
            if subject is not None:
                return HTTPStatus.OK, "text/html; charset=utf-8", render_subject(subject).encode()
        elif match := _COVER.match(path):
            if match.group(1) in self._by_id:
                return HTTPStatus.OK, "image/png", self._cover(match.group(1))
        elif path == "/":
            return HTTPStatus.OK, "text/html; charset=utf-8", _index(self).encode()
        return (HTTPStatus.NOT_FOUND, "text/html; charset=utf-8",
                "<html><head><title>页面不存在</title></head><body>你想访问的页面不存在</body></html>".encode())

    def _list(self, params: dict[str, str]) -> tuple[int, str, bytes]:
        kind = params.get("type", "")
        if kind not in ("movie", "tv"):
            return _json(HTTPStatus.BAD_REQUEST, {"msg": "type must be movie or tv", "code": 400})
        numbers = {}
        for name, default in (("page_limit", 20), ("page_start", 0)):
            value = params.get(name, "")
            if value == "":
                numbers[name] = default
            elif value.isdigit() and int(value) <= (PAGE_LIMIT_MAX if name == "page_limit" else 10**6):
                numbers[name] = int(value)
            else:
                return _json(HTTPStatus.BAD_REQUEST, {"msg": f"{name} must be a whole number", "code": 400})
        if params.get("tag", NEWEST_TAG) != NEWEST_TAG:
            return _json(HTTPStatus.OK, {"subjects": []})
        start, limit = numbers["page_start"], numbers["page_limit"]
        listed = [subject for subject in self.subjects if subject.kind == kind][start:start + limit]
        return _json(HTTPStatus.OK, {"subjects": [subject.list_entry(self.root) for subject in listed]})

    def _cover(self, subject_id: str) -> bytes:
        with self._covers_lock:
            if subject_id not in self._covers:
                subject = self._by_id[subject_id]
                self._covers[subject_id] = cover_png(key=subject_id, name=content.english_name(subject_id),
                                                     year=subject.year)
            return self._covers[subject_id]


def _json(status: int, document: Any) -> tuple[int, str, bytes]:
    return status, "application/json; charset=utf-8", json.dumps(document, ensure_ascii=False).encode()


def _index(server: DemoDouban) -> str:
    movies = sum(subject.kind == "movie" for subject in server.subjects)
    return (f"<!doctype html><meta charset=utf-8><title>Chorus demo Douban</title>"
            f"<p>Chorus's demo Douban: {movies} made-up films and {len(server.subjects) - movies} made-up TV "
            f"seasons. Set CATALOG_DOUBAN_ROOT={server.root} and sync the catalog; "
            f"<a href='{LIST_PATH}?type=movie&amp;tag={NEWEST_TAG}&amp;page_limit=80&amp;page_start=0'>the list</a>.")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: the sync's client reuses its connection

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        status, content_type, body = self.server.demo.answer(url.path, url.query)
        self._send(status, content_type, body)

    def do_HEAD(self) -> None:
        url = urlsplit(self.path)
        status, content_type, body = self.server.demo.answer(url.path, url.query)
        self._send(status, content_type, body, head=True)

    def _refuse(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", b"GET only\n", allow=True)

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def _send(self, status: int, content_type: str, body: bytes, *, head: bool = False, allow: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if allow:
            self.send_header("Allow", "GET, HEAD")
        if content_type == "image/png":
            self.send_header("Cache-Control", "max-age=86400")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a sync makes a request every fraction of a second."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, demo: DemoDouban, address: tuple[str, int]) -> None:
        self.demo = demo
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up is no error of the server."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

