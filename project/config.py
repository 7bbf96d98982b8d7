"""Reading configuration from the environment.

Every setting comes from the environment (optionally from a `.env` file at the
project root). A missing or malformed value raises `ConfigError`, whose message is
one line naming the setting; `manage.py`, the ASGI app and Celery print that line and
exit instead of showing a traceback.
"""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(Exception):
    """A setting is missing or malformed; str(exc) is one line naming it."""


def read_env_file() -> None:
    """Load `.env` (or the file named by CHORUS_ENV_FILE) without overriding the environment."""
    path = Path(os.environ.get("CHORUS_ENV_FILE", BASE_DIR / ".env"))
    if path.is_file():
        environ.Env.read_env(str(path), overwrite=False)


def get_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise ConfigError(f"{name} is required but not set (see .env.example)")
        return default
    return value


def get_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no)")


def get_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def get_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def get_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def get_choice(name: str, default: str, *, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(f"{name}={raw!r} is not one of {', '.join(choices)}")
    return value


def get_networks(name: str, default: list[str]) -> list:
    """Comma-separated IP networks or addresses (`10.0.0.0/8, 192.168.1.7`), as ip_network objects."""
    import ipaddress

    networks = []
    for item in get_list(name, default):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{name}: {item!r} is not an IP network (such as 192.168.1.0/24) or address") from None
    return networks


def check_fernet_keys(name: str, keys: list[str]) -> None:
    """Each key must be a Fernet key (32 url-safe base64 bytes), e.g. from
    `python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`.
    Checked as Fernet checks it (decoded, 32 bytes) without importing cryptography, which
    costs every process about 10 MB, most of which (the workers) never encrypt anything."""
    for index, key in enumerate(keys, start=1):
        try:
            valid = len(base64.urlsafe_b64decode(key.encode())) == 32
        except ValueError:  # binascii.Error: not base64
            valid = False
        if not valid:
            raise ConfigError(f"{name}: key {index} is not a Fernet key (32 url-safe base64-encoded bytes)")


def get_database(name: str, default: str) -> dict:
    raw = get_str(name, default)
    scheme = urlsplit(raw).scheme
    if scheme not in {"sqlite", "postgres", "postgresql", "pgsql"}:
        raise ConfigError(
            f"{name}={_redact(raw)!r} is not a sqlite:/// or postgres:// URL"
        )
    try:
        config = environ.Env.db_url_config(raw)
    except Exception as exc:  # django-environ raises several types
        raise ConfigError(f"{name}={_redact(raw)!r} is malformed: {exc}") from None
    if not config.get("NAME"):
        raise ConfigError(f"{name}={_redact(raw)!r} names no database")
    return config


def get_url(name: str, default: str | None, *, schemes: set[str]) -> str:
    raw = get_str(name, default)
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not (parts.hostname or parts.path):
        wanted = " or ".join(f"{s}://" for s in sorted(schemes))
        raise ConfigError(f"{name}={_redact(raw)!r} is not a {wanted} URL")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"{name}={_redact(raw)!r} has an invalid port") from None
    return raw


def get_dir(name: str, default: Path) -> Path:
    raw = os.environ.get(name)
    path = Path(raw).expanduser() if raw else default
    if not path.is_absolute():
        path = BASE_DIR / path
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{name}={str(path)!r} exists but is not a directory")
    return path


def _redact(url: str) -> str:
    """Hide a password in a URL so that it never reaches a log or terminal."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def exit_on_config_error(exc: ConfigError) -> None:
    """Print one clear line and stop."""
    sys.stderr.write(f"chorus: configuration error: {exc}\n")
    raise SystemExit(2)
