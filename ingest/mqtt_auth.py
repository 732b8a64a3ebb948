"""Mosquitto password and ACL files: the platform account and one account per device.

Mosquitto (2.x) reads one password file and one ACL file. They are rendered from
fragments so the platform account and the onboarded devices can be rewritten
independently; after rewriting, the broker reloads them on SIGHUP.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: Iterations mosquitto_passwd itself uses for its PBKDF2-SHA512 ``$7$`` hashes.
PBKDF2_ITERATIONS = 101
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

PLATFORM_FRAGMENT = "platform"
DEVICES_FRAGMENT = "devices"


def password_hash(password: str, salt: bytes | None = None) -> str:
    """A ``$7$`` PBKDF2-SHA512 hash in the format ``mosquitto_passwd`` writes."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    b64 = base64.b64encode
    return f"$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    _, kind, iterations, salt_b64, digest_b64 = hashed.split("$")
    if kind != "7":
        return False
    salt = base64.b64decode(salt_b64)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(iterations))
    return secrets.compare_digest(digest, base64.b64decode(digest_b64))


@dataclass(frozen=True)
class DeviceAccount:
    """MQTT account of one device: it may write only its own topics."""

    city: str
    device_id: str
    kind: str  # "sensors" or "cameras"
    password_hash: str

    @property
    def username(self) -> str:
        return device_username(self.city, self.device_id)

    def acl_lines(self) -> list[str]:
        base = f"cityops/{self.city}/{self.kind}/{self.device_id}"
        up = "up" if self.kind == "sensors" else "event"
        return [
            f"user {self.username}",
            f"topic write {base}/{up}",
            f"topic write {base}/status",
            f"topic read {base}/cmd/#",
            "",
        ]


def device_username(city: str, device_id: str) -> str:
    """MQTT user name of a device: unique across cities."""
    return f"{city}.{device_id}"


def check_identifier(value: str, what: str) -> str:
    """Reject ids that could escape an MQTT topic level or an ACL line."""
    if not _SAFE_ID.match(value):
        raise ValueError(
            f"{what} {value!r} must be 1-64 characters of letters, digits, '.', '_' or '-'"
        )
    return value


def platform_fragments(username: str, password: str) -> tuple[str, str]:
    """Password and ACL lines of the platform account (ingest, simulators, tests)."""
    check_identifier(username, "platform MQTT user")
    passwd = f"{username}:{password_hash(password)}\n"
    acl = "\n".join([f"user {username}", "topic readwrite cityops/#", "topic read $SYS/#", ""])
    return passwd, acl


def device_fragments(accounts: Iterable[DeviceAccount]) -> tuple[str, str]:
    passwd: list[str] = []
    acl: list[str] = []
    for account in accounts:
        passwd.append(f"{account.username}:{account.password_hash}\n")
        acl.extend(account.acl_lines())
    return "".join(passwd), "\n".join(acl)


class AuthFiles:
    """The password and ACL files of one Mosquitto, built from named fragments."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.passwd = directory / "passwd"
        self.acl = directory / "acl"
        self.fragments = directory / "auth.d"

    def write_fragment(self, name: str, passwd: str, acl: str) -> None:
        self.fragments.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.fragments / f"{name}.passwd", passwd)
        _atomic_write(self.fragments / f"{name}.acl", acl)

    def render(self, owner: str | None = None) -> None:
        """Concatenate every fragment into the files Mosquitto reads."""
        passwd, acl = [], []
        for frag in sorted(self.fragments.glob("*.passwd")):
            passwd.append(frag.read_text())
            acl_frag = frag.with_suffix(".acl")
            if acl_frag.exists():
                acl.append(acl_frag.read_text())
        _atomic_write(self.passwd, "".join(passwd), owner=owner)
        _atomic_write(self.acl, "\n".join(acl), owner=owner)


def _atomic_write(path: Path, text: str, owner: str | None = None) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    if owner is not None and os.geteuid() == 0:
        import shutil

        shutil.chown(tmp, user=owner, group=owner)
    tmp.replace(path)
