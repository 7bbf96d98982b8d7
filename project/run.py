"""`make run`: prepare and start everything (web, worker, beat) with one command.

1. Write `.env` with a fresh SECRET_KEY on first run (embedded defaults: SQLite).
2. Migrate, collect static files, load the demo content.
3. When REDIS_URL is not set, start a private redis-server under var/ on a free port.
4. Run the Procfile (Daphne, Celery worker, Celery beat) under honcho; Ctrl-C stops all.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VAR = BASE_DIR / "var"
BIN = Path(sys.executable).parent
ENV_FILE = BASE_DIR / ".env"

LOCAL_ENV = """\
# Written by `make run` for a local installation; see .env.example for every setting.
SECRET_KEY={secret}
# DEBUG=0 even locally, so you see the real error pages; http on localhost is allowed below.
DEBUG=0
ALLOWED_HOSTS=localhost,127.0.0.1,[::1]
SECURE_SSL_REDIRECT=0
SESSION_COOKIE_SECURE=0
CSRF_COOKIE_SECURE=0
DATABASE_URL=sqlite:///var/chorus.sqlite3
# REDIS_URL unset: `make run` starts a private redis-server under var/.
"""


def say(message: str) -> None:
    print(f"\033[1;35mchorus\033[0m {message}", flush=True)


def free_port(preferred: int | None = None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port")


def ensure_env_file() -> None:
    if not ENV_FILE.exists():
        ENV_FILE.write_text(LOCAL_ENV.format(secret=secrets.token_urlsafe(50)))
        ENV_FILE.chmod(0o600)
        say("wrote .env with a new SECRET_KEY")


def manage(*args: str, env: dict) -> None:
    subprocess.run([str(BIN / "python"), str(BASE_DIR / "manage.py"), *args], env=env, check=True, cwd=BASE_DIR)


def start_private_redis(env: dict) -> subprocess.Popen:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("chorus: redis-server is not installed: sudo apt-get install redis-server (or set REDIS_URL)")
    port = free_port()
    data = VAR / "redis"
    data.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--save", "60 1",
         "--appendonly", "no", "--logfile", str(data / "redis.log"), "--protected-mode", "yes"],
        cwd=BASE_DIR,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if process.poll() is not None:
                sys.exit(f"chorus: redis-server exited; see {data / 'redis.log'}")
            time.sleep(0.05)
    env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    say(f"private redis-server on 127.0.0.1:{port} (data in var/redis)")
    return process


def main() -> None:
    os.chdir(BASE_DIR)
    VAR.mkdir(exist_ok=True)
    ensure_env_file()
    from project.config import read_env_file

    read_env_file()
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if "PROMETHEUS_MULTIPROC_DIR" not in env:
        # One /metrics for web and worker: prometheus_client's multiprocess mode.
        metrics_dir = VAR / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    say("migrating the database")
    manage("migrate", "--noinput", env=env)
    manage("collectstatic", "--noinput", "-v", "0", env=env)
    say("loading demo content")
    manage("load_demo", env=env)

    redis_process = None if os.environ.get("REDIS_URL") else start_private_redis(env)
    host = env.get("CHORUS_HOST", "127.0.0.1")
    port = free_port(int(env.get("CHORUS_PORT", "8000")))
    env.update(CHORUS_HOST=host, CHORUS_PORT=str(port), CHORUS_BIN=str(BIN))
    shown_host = "localhost" if host in {"127.0.0.1", "0.0.0.0", "::"} else host  # noqa: S104 - only for display
    url = f"http://{shown_host}:{port}/"
    password_file = VAR / "demo-password.txt"
    login = f" and log in as demo / {password_file.read_text().strip()}" if password_file.exists() else ""
    say(f"starting web, worker and beat: open {url}{login}  (Ctrl-C stops everything)")
    honcho = subprocess.Popen([str(BIN / "honcho"), "start", "-f", str(BASE_DIR / "Procfile"), "-d", str(BASE_DIR)], env=env)
    try:
        code = honcho.wait()
    except KeyboardInterrupt:
        code = honcho.wait()
    finally:
        if redis_process is not None:
            if redis_process.poll() is None:
                redis_process.send_signal(signal.SIGTERM)
            redis_process.wait(timeout=10)
        say("stopped")
    sys.exit(code if code and code > 0 else 0)


if __name__ == "__main__":
    main()
