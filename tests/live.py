"""Live servers and a real browser for end-to-end tests.

Servers
    `asgi_server` is one Daphne subprocess serving `project.asgi:application` on the test
    database; `asgi_server_factory(count)` starts several at once (for example two processes
    that share Redis, so that a websocket event sent through one reaches a client of the other).
    Both pull in `transactional_db`: the server is another process and only sees committed
    rows, so each test's data is really committed and flushed afterwards. Create data with the
    ORM or factories as usual; `settings.LIBRARY_DIR` as it is when
    the server starts is passed on (so `library_dir` / `imported` work).

Browser
    `browser` is Debian's chromium driven by Playwright; `page_factory(**context_options)`
    opens a page in a fresh context (own cookies: one per user), 1280x800, light scheme;
    `page` is one such page whose relative URLs go to `asgi_server`. Uncaught JavaScript
    errors of every page land in `js_errors`. `log_in(page, username=...)` logs in through
    the real login form. Mark browser tests with `@pytest.mark.browser`.

When a test fails, the servers' output (access log, Django log) and each page's console
are added to the failure report.

    @pytest.mark.browser
    def test_library_opens(alice, page):             # page -> asgi_server -> transactional_db
        log_in(page, username=alice.username)
        page.goto("/library/")

    def test_two_processes(asgi_server_factory):
        first, second = asgi_server_factory(2)         # both on the test database and Redis
        ...                                            # e.g. websockets to first.ws_url and second.ws_url
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connections

from tests import env as test_env
from tests.factories import DEFAULT_PASSWORD

CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
DAPHNE = Path(sys.executable).with_name("daphne")  # the virtualenv's, next to the Python running pytest
HOST = "127.0.0.1"
SERVER_START_TIMEOUT_S = 30
SERVER_STOP_TIMEOUT_S = 10
PAGE_TIMEOUT_MS = 10_000

# Failure-report sections collected during a test: (title, function returning the text).
_report_sections = pytest.StashKey[list[tuple[str, Callable[[], str]]]]()


def _add_report_section(request: pytest.FixtureRequest, title: str, text: Callable[[], str]) -> None:
    request.node.stash.setdefault(_report_sections, []).append((title, text))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed and report.when in {"setup", "call"}:
        for title, text in item.stash.get(_report_sections, []):
            report.sections.append((title, text() or "(empty)"))
    return report


# --- Daphne on the test database --------------------------------------------------------


@dataclass
class LiveServer:
    """A running Daphne process. `url` is http://127.0.0.1:PORT, `ws_url` the ws:// twin."""

    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(SERVER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def stop_process_group(process: subprocess.Popen, *, timeout_s: float = 20) -> None:
    """SIGTERM to a child started with start_new_session=True and its own children, then
    SIGKILL if it is still there after `timeout_s`."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def start_livefeed_worker(name: str, *, env: dict[str, str], log_dir: Path) -> subprocess.Popen:
    """A livefeed Celery worker as the Procfile starts it (its fetcher and recorder hosts), in
    a process group of its own so that a test can kill it and its ffmpegs with -9; its output
    in log_dir/<name>.log. `env`: from _server_env."""
    log = (log_dir / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "project.worker", "-Q", "livefeed", "-P", "solo", "--loglevel=INFO",
         "--without-gossip", "--without-mingle", "-n", f"{name}-{os.getpid()}@%h"],
        cwd=settings.BASE_DIR, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)


def _database_url() -> str:
    """DATABASE_URL of the test database pytest-django created (its NAME is set by now)."""
    db = settings.DATABASES["default"]
    name = str(db["NAME"])
    if db["ENGINE"] == "django.db.backends.sqlite3":
        if "memory" in name:
            pytest.fail("Live servers need a database another process can open: PostgreSQL, or SQLite in a file"
                        " (CHORUS_TEST_DB=sqlite, see tests/env.py), not in memory.")
        return f"sqlite:///{name}"
    credentials = quote(db.get("USER") or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{credentials}{'@' if credentials else ''}{host}{port}/{quote(name, safe='')}"


def _server_env(extra: dict[str, str]) -> dict[str, str]:
    child = dict(os.environ)
    # tests/env.py's defaults (or the values the developer exported instead).
    child.update({key: os.environ.get(key, value) for key, value in test_env.DEFAULTS.items()})
    child.update(
        {
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "CHORUS_ENV_FILE": os.devnull,
            "DATABASE_URL": _database_url(),
            "LIBRARY_DIR": str(settings.LIBRARY_DIR),
            "PYTHONUNBUFFERED": "1",
        }
    )
    # The browser fixture relaxes Django's async check in *this* process only; the server
    # must keep it, so that an ORM call from async code fails there as in production.
    child.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    child.update(extra)
    return child


def _spawn(log_dir: Path, env: dict[str, str]) -> LiveServer:
    """A Daphne on a listening socket this process made (`daphne --fd`): the port is never
    free between being chosen and being listened on, so no other process can take it (and
    answer for this server), and a connection made before Daphne is ready waits in the
    socket's queue instead of being refused."""
    if not DAPHNE.exists():
        pytest.fail(f"{DAPHNE} not found: run pytest with the virtualenv's Python (.venv/bin/python -m pytest).")
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        log_path = log_dir / f"daphne-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(DAPHNE), "--fd", str(listener.fileno()), "--access-log", "-", "project.asgi:application"],
                cwd=settings.BASE_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(listener.fileno(),),
            )
    return LiveServer(port=port, process=process, log_path=log_path)


def _answers(port: int, timeout_s: float) -> bool:
    """Whether Daphne answers HTTP on `port` (any status: /healthz is 503 in a test that
    stopped Redis). Connecting alone proves nothing: the socket listens before Daphne runs."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        connection.request("GET", "/healthz")
        connection.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _wait_until_up(server: LiveServer, deadline: float) -> str | None:
    """None once the server answers; otherwise why it did not come up."""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return f"exited with status {server.process.returncode}"
        if _answers(server.port, timeout_s=max(0.1, min(2.0, deadline - time.monotonic()))):
            return None
        time.sleep(0.05)
    return f"did not answer on port {server.port} within {SERVER_START_TIMEOUT_S} s"


def _start(log_dir: Path, env: dict[str, str], count: int) -> list[LiveServer]:
    """Start `count` servers in parallel and wait until each answers."""
    servers = [_spawn(log_dir, env) for _ in range(count)]
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    for server in servers:
        problem = _wait_until_up(server, deadline)
        if problem is not None:
            for other in servers:
                other.stop()
            log = server.log()
            print(f"--- daphne log ({server.log_path}) ---\n{log}", file=sys.stderr)
            pytest.fail(f"Daphne {problem}:\n{log[-4000:]}", pytrace=False)
    return servers


@pytest.fixture
def asgi_server_factory(transactional_db, tmp_path_factory, request) -> Iterator[Callable[..., list[LiveServer]]]:
    """`start(count=1, env=None)` -> `count` Daphne servers on the test database, stopped at teardown.

    All servers share the test database and the test Redis (REDIS_URL), like production
    processes behind a load balancer. `env` adds or overrides environment variables.
    """
    started: list[LiveServer] = []
    log_dir = tmp_path_factory.mktemp("daphne")

    def start(count: int = 1, env: dict[str, str] | None = None) -> list[LiveServer]:
        servers = _start(log_dir, _server_env(env or {}), count)
        for server in servers:
            started.append(server)
            _add_report_section(request, f"daphne {server.url} output", server.log)
        return servers

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def asgi_server(asgi_server_factory) -> LiveServer:
    """One Daphne server on the test database; `asgi_server.url` is its base URL."""
    return asgi_server_factory(1)[0]


# --- Chromium through Playwright ----------------------------------------------------------


@pytest.fixture
def browser(monkeypatch):
    """Debian's chromium, headless, launched for this test only.

    Playwright's sync API keeps an asyncio loop "running" in this thread for as long as it is
    open, though it only ever runs Playwright's own I/O. Django would see that loop and
    (1) refuse ORM calls with SynchronousOnlyOperation, and (2) through asgiref's Local hand
    out a *second* database connection, outside the test's transaction and never closed
    (a failed test then keeps it open and the test database cannot be dropped). Tests use
    the ORM and factories freely before, during and after the browser steps, so for exactly
    the lifetime of Playwright in this test:
      - DJANGO_ALLOW_ASYNC_UNSAFE is set (monkeypatch undoes it; the Daphne subprocesses
        never inherit it, see `_server_env`), and
      - the thread's own connection wrappers are also installed for "async" code, so every
        ORM call keeps using the one connection pytest-django manages.
    Function scope on purpose: a session-wide Playwright would leave that loop "running"
    in every later test, breaking sync ORM calls and pytest-asyncio alike.
    """
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (make test does), or set CHROMIUM_BINARY.")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    wrappers = {alias: connections[alias] for alias in connections}
    with sync_playwright() as playwright:
        for alias, wrapper in wrappers.items():
            connections[alias] = wrapper  # the loop is running now: this fills the "async" slot
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
            for alias in wrappers:
                del connections[alias]


@dataclass
class _PageLog:
    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def js_errors() -> list[str]:
    """Uncaught JavaScript errors of every page opened with `page_factory` (assert it stays empty)."""
    return []


@pytest.fixture
def page_factory(browser, js_errors, request):
    """`new_page(**context_options)` -> a Page in a fresh browser context (its own cookies).

    Defaults: 1280x800 viewport, light colour scheme, 10 s timeouts; pass Playwright's
    `browser.new_context` options to change them, e.g. `base_url=server.url`,
    `viewport={"width": 390, "height": 844}`, `color_scheme="dark"`.
    """
    contexts = []

    def new_page(**context_options):
        options = {"viewport": {"width": 1280, "height": 800}, "color_scheme": "light", **context_options}
        context = browser.new_context(**options)
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        log = _PageLog()

        def on_page_error(error):
            log.lines.append(f"uncaught: {error}")
            js_errors.append(str(error))

        page.on("console", lambda message: log.lines.append(f"console.{message.type}: {message.text}"))
        page.on("pageerror", on_page_error)
        page.on("requestfailed", lambda req: log.lines.append(f"request failed: {req.method} {req.url} {req.failure}"))
        _add_report_section(request, f"browser page {len(contexts)} console", log.text)
        return page

    yield new_page
    for context in contexts:
        context.close()


@pytest.fixture
def page(page_factory, asgi_server):
    """A fresh page whose relative URLs (`page.goto("/library/")`) go to `asgi_server`."""
    return page_factory(base_url=asgi_server.url)


def log_in(page, *, username: str, password: str = DEFAULT_PASSWORD) -> None:
    """Log in through the real login form and wait until the page is the logged-in home."""
    from playwright.sync_api import expect

    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    # The log-out button is in the collapsed menu on a phone: attached, not necessarily visible.
    expect(page.get_by_role("button", name="Log out", include_hidden=True)).to_be_attached()
