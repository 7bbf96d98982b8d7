"""Secrets at rest: values encrypted with Fernet (AES-128-CBC + HMAC-SHA256).

Keys come from ENCRYPTION_KEYS (comma-separated Fernet keys, the first one encrypts, all
of them decrypt, so a key can be rotated); unset, one key is derived from SECRET_KEY with
HKDF. Changing SECRET_KEY without setting ENCRYPTION_KEYS makes stored secrets unreadable,
which is reported as such, never as garbage.
"""

from __future__ import annotations

import base64
import functools
import logging
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

# cryptography is imported where a secret is encrypted or decrypted, not with this module:
# every process loads it (the models use EncryptedTextField), and most never need it (about
# 9 MB of a live-feed worker, docs/benchmarks.md "worker RSS").

PREFIX = "fernet:"
logger = logging.getLogger(__name__)


class SecretUnreadable(Exception):
    """A stored secret was encrypted with a key this installation no longer has."""


@functools.cache
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    from cryptography.fernet import Fernet, MultiFernet
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if keys:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"chorus-secrets", info=b"fernet").derive(
        secret_key.encode()
    )
    return MultiFernet([Fernet(base64.urlsafe_b64encode(derived))])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.ENCRYPTION_KEYS), settings.SECRET_KEY)


def encrypt(value: str) -> str:
    return PREFIX + fernet().encrypt(value.encode()).decode()


def decrypt(value: str) -> str:
    from cryptography.fernet import InvalidToken

    if not value.startswith(PREFIX):
        raise SecretUnreadable("The stored value is not encrypted.")
    try:
        return fernet().decrypt(value[len(PREFIX):].encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("The stored secret was encrypted with another key (see ENCRYPTION_KEYS).") from None


class EncryptedTextField(models.TextField):
    """A text column that holds its value encrypted; Python code sees plain text.

    Not searchable or orderable by value, by design."""

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        try:
            return decrypt(value)
        except SecretUnreadable as exc:
            # The row stays usable; code that needs the secret sees "" and asks the user
            # to reconnect instead of failing on every page that lists the row.
            logger.warning("unreadable secret in %s: %s", self.model._meta.label, exc)
            return ""
