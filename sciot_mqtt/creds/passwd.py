"""Mosquitto 2's password file, read and written with hashlib alone.

A line is `username:$7$<iterations>$<base64 salt>$<base64 PBKDF2-SHA512 digest>`. Mosquitto
2.0 writes 101 iterations, a 12-byte salt and a 64-byte digest; verification here accepts any
iteration count and salt length, so files from newer `mosquitto_passwd` versions work too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sciot_mqtt.errors import ConfigurationError
from sciot_mqtt.protocol.accounts import Account, parse_account

# Relative to the working directory: the repository root, where compose.yaml mounts it from.
DEFAULT_CREDENTIALS_FILE = Path("mosquitto/passwd")

_SCHEME = "$7$"
_ITERATIONS = 101  # what mosquitto_passwd 2.0 writes; its broker checks against the stored count
_SALT_BYTES = 12
_DIGEST_BYTES = 64
_MAX_ITERATIONS = 1_000_000  # a hostile file must not stall the broker on every connect


class CredentialsError(ConfigurationError):
    """A password file or an account that cannot be used; the message says why."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """The `$7$` hash Mosquitto 2 stores for `password`."""
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS, _DIGEST_BYTES)
    return f"{_SCHEME}{_ITERATIONS}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True if `password` matches a `$7$` hash; False for any other or malformed hash."""
    parts = stored.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except (ValueError, binascii.Error):
        return False
    if not 1 <= iterations <= _MAX_ITERATIONS or not expected:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(expected))
    return hmac.compare_digest(digest, expected)


def generate_password() -> str:
    """24 random URL-safe characters (144 bits)."""
    return secrets.token_urlsafe(18)


def check_account_name(name: str) -> Account:
    """Accounts are device ids (the topic level the ACLs substitute), `sciot-service-NAME` for
    service instance NAME, or `sciot-health-NAME` for its health check."""
    account = parse_account(name)
    if account is None:
        raise CredentialsError(
            f"{name!r} is no account name: a device id (1-64 of A-Z a-z 0-9 _ . -, starting "
            "with a letter or digit, not with `sciot-`), sciot-service-INSTANCE or "
            "sciot-health-INSTANCE"
        )
    return account


@dataclass(frozen=True, slots=True)
class PasswordFile:
    """A password file's accounts, loaded at once; `save` writes the file back atomically."""

    path: Path
    entries: dict[str, str]  # account -> stored hash, in file order

    @classmethod
    def load(cls, path: Path | str, *, missing_ok: bool = False) -> PasswordFile:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if missing_ok:
                return cls(path, {})
            raise CredentialsError(
                f"credentials file {path} not found; create it with `sciot-mqtt creds add`"
            ) from None
        except OSError as exc:
            raise CredentialsError(f"cannot read credentials file {path}: {exc}") from exc
        entries: dict[str, str] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, stored = line.partition(":")
            if not sep or not name or not stored:
                raise CredentialsError(f"{path}:{number}: expected `user:hash`")
            entries[name] = stored
        return cls(path, entries)

    def accounts(self) -> list[str]:
        return list(self.entries)

    def verify(self, username: str, password: str) -> bool:
        stored = self.entries.get(username)
        return stored is not None and verify_password(password, stored)

    def add(self, name: str, password: str) -> None:
        """Add the account, or replace its password."""
        check_account_name(name)
        if not password:
            raise CredentialsError("the password must not be empty")
        self.entries[name] = hash_password(password)

    def remove(self, name: str) -> None:
        if self.entries.pop(name, None) is None:
            raise CredentialsError(f"no account {name!r} in {self.path}")

    def save(self) -> None:
        """Write to a temporary file beside it, then rename: a broker never reads half a file.

        The file is created readable by its owner only; a broker running as another user
        (the container's `mosquitto`, uid 1883) needs it chowned or group-readable.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{name}:{stored}\n" for name, stored in self.entries.items())
        mode = self.path.stat().st_mode & 0o777 if self.path.exists() else 0o600
        fd, tmp = tempfile.mkstemp(prefix=".passwd-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(tmp, mode)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
