"""MQTT accounts and ACLs, managed live through Mosquitto's dynamic-security plugin.

Every account change is a JSON command published to ``$CONTROL/dynamic-security/v1``
by the broker's admin account; the broker applies it at once and saves its own
configuration. Nothing is ever reloaded: a SIGHUP would strip restored sessions of their
ACLs on some brokers and costs every connection a re-check.

Each device gets a client (``<city>.<device id>``) and a role of its own that lets it
publish only its own uplink and status topics and subscribe only to its own command
topics. The platform account reads and writes ``cityops/#``; the admin account may only
talk to the control topic.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import ssl
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"

ADMIN_ROLE = "cityops-admin"
PLATFORM_ROLE = "cityops-platform"
DEVICE_ROLE_PREFIX = "device."

#: Iterations mosquitto_passwd itself uses for its PBKDF2-SHA512 ``$7$`` hashes.
PBKDF2_ITERATIONS = 101
#: Bytes of JSON per control message; the broker's ``max_packet_size`` is larger. The
#: plugin rewrites its whole file after each message (about 1.5 s with 100,000 accounts),
#: so fewer, larger messages onboard a city faster.
MAX_CONTROL_BYTES = 1_900_000

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class BrokerAccountError(RuntimeError):
    """The broker refused or did not answer an account command."""


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


def check_identifier(value: str, what: str) -> str:
    """Reject ids that could escape an MQTT topic level or an account name."""
    if not _SAFE_ID.match(value):
        raise ValueError(
            f"{what} {value!r} must be 1-64 characters of letters, digits, '.', '_' or '-'"
        )
    return value


def device_username(city: str, device_id: str) -> str:
    """MQTT user name of a device: unique across cities."""
    return f"{city}.{device_id}"


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": True}


@dataclass(frozen=True)
class DeviceAccount:
    """MQTT account of one device: it may write only its own topics."""

    city: str
    device_id: str
    kind: str  # "sensors" or "cameras"

    @property
    def username(self) -> str:
        return device_username(self.city, self.device_id)

    @property
    def role(self) -> str:
        return DEVICE_ROLE_PREFIX + self.username

    def acls(self) -> list[dict[str, Any]]:
        base = f"cityops/{self.city}/{self.kind}/{self.device_id}"
        up = "up" if self.kind == "sensors" else "event"
        return [
            _acl("publishClientSend", f"{base}/{up}"),
            _acl("publishClientSend", f"{base}/status"),
            _acl("subscribePattern", f"{base}/cmd/#"),
        ]


def platform_acls() -> list[dict[str, Any]]:
    return [
        _acl("publishClientSend", "cityops/#"),
        _acl("subscribePattern", "cityops/#"),
        # The broker checks shared subscriptions with their $share/<group>/ prefix.
        _acl("subscribePattern", "$share/+/cityops/#"),
        _acl("subscribePattern", "$SYS/#"),
    ]


def admin_acls() -> list[dict[str, Any]]:
    # The broker never lets $CONTROL topics fall through to the default access: sending
    # commands and receiving the responses are both granted explicitly.
    return [
        _acl("publishClientSend", CONTROL_TOPIC),
        _acl("publishClientReceive", f"{CONTROL_TOPIC}/#"),
        _acl("subscribePattern", f"{CONTROL_TOPIC}/#"),
        _acl("subscribePattern", "$SYS/#"),
    ]


def initial_config(
    admin: tuple[str, str], platform: tuple[str, str], salt: bytes | None = None
) -> dict[str, Any]:
    """The dynamic-security configuration a new broker starts from: the admin account and
    the platform account with their roles, everything else denied."""
    check_identifier(admin[0], "MQTT admin user")
    check_identifier(platform[0], "platform MQTT user")
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": True,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": [
            {
                "username": admin[0],
                "encoded_password": password_hash(admin[1], salt),
                "roles": [{"rolename": ADMIN_ROLE}],
            },
            {
                "username": platform[0],
                "encoded_password": password_hash(platform[1], salt),
                "roles": [{"rolename": PLATFORM_ROLE}],
            },
        ],
        "groups": [],
        "roles": [
            {"rolename": ADMIN_ROLE, "acls": admin_acls()},
            {"rolename": PLATFORM_ROLE, "acls": platform_acls()},
        ],
    }


@dataclass(frozen=True)
class Tls:
    """How a client reaches a TLS listener: the CA to trust, optionally its own certificate."""

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None

    def apply(self, client: mqtt.Client) -> None:
        client.tls_set(
            ca_certs=self.ca_file,
            certfile=self.cert_file,
            keyfile=self.key_file,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )


#: What tagging a command with its message's correlation data adds to its JSON.
_TAG_BYTES = len(', "correlationData": ""') + len(uuid.uuid4().hex)
_ENVELOPE_BYTES = len('{"commands": []}')


def chunks(
    commands: Sequence[dict[str, Any]], limit: int = MAX_CONTROL_BYTES
) -> Iterator[list[dict[str, Any]]]:
    """Split commands into messages of at most ``limit`` bytes of JSON each, counting the
    correlation data every command is sent with."""
    batch: list[dict[str, Any]] = []
    size = _ENVELOPE_BYTES
    for command in commands:
        n = len(json.dumps(command)) + _TAG_BYTES + 2
        if batch and size + n > limit:
            yield batch
            batch, size = [], _ENVELOPE_BYTES
        batch.append(command)
        size += n
    if batch:
        yield batch


class BrokerAdmin:
    """A connection of the broker's admin account to the dynamic-security control topic.

    Commands go one message at a time and each waits for its response, so a caller
    knows every change is applied (and saved by the broker) when a call returns.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        tls: Tls | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"cityops-admin-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(username, password)
        if tls is not None:
            tls.apply(self._client)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._lost: str | None = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._connect_rc: int | None = None
        self._lock = threading.Lock()
        self._waiting: dict[str, threading.Event] = {}
        self._responses: dict[str, list[dict[str, Any]]] = {}

    # -- connection ------------------------------------------------------------------

    def __enter__(self) -> BrokerAdmin:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        try:
            self._client.connect(self.host, self.port, keepalive=60)
        except OSError as exc:
            raise BrokerAccountError(
                f"cannot reach the MQTT broker at {self.host}:{self.port}: {exc}; "
                "is it running (`cityops stack status`)?"
            ) from exc
        self._client.loop_start()
        if not self._connected.wait(self.timeout):
            self.close()
            raise BrokerAccountError(f"the MQTT broker at {self.host}:{self.port} did not answer")
        if self._connect_rc != 0:
            self.close()
            raise BrokerAccountError(
                f"the MQTT broker refused the admin account (reason code {self._connect_rc}); "
                "check CITYOPS_MQTT_ADMIN_PASSWORD"
            )
        self._client.subscribe(RESPONSE_TOPIC, qos=1)
        if not self._subscribed.wait(self.timeout):
            self.close()
            raise BrokerAccountError("the MQTT broker did not confirm the control subscription")

    def close(self) -> None:
        self._connected.clear()
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self, _c: object, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        self._connect_rc = int(reason.value)
        self._connected.set()

    def _on_subscribe(self, _c: object, _u: object, _m: int, codes: list[Any], _p: object) -> None:
        reasons: list[ReasonCode] = codes
        if all(int(r.value) < 0x80 for r in reasons):
            self._subscribed.set()

    def _on_disconnect(
        self, _c: object, _u: object, _f: object, reason: object, _p: object
    ) -> None:
        if self._connected.is_set():
            self._lost = str(reason)
            with self._lock:
                waiting = list(self._waiting.values())
            for event in waiting:
                event.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(msg.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            return
        tag = next((r.get("correlationData") for r in responses if r.get("correlationData")), None)
        if tag is None:
            return
        with self._lock:
            event = self._waiting.pop(tag, None)
            if event is not None:
                self._responses[tag] = responses
        if event is not None:
            event.set()

    # -- commands --------------------------------------------------------------------

    def execute(self, commands: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send commands (in as many messages as their size needs); return one response
        per command, in order. Errors are in each response's ``error``."""
        out: list[dict[str, Any]] = []
        for batch in chunks(commands):
            tag = uuid.uuid4().hex
            tagged = [{**c, "correlationData": tag} for c in batch]
            event = threading.Event()
            with self._lock:
                self._waiting[tag] = event
            info = self._client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise BrokerAccountError(
                    f"could not send account commands: {mqtt.error_string(info.rc)}"
                )
            if not event.wait(self.timeout):
                with self._lock:
                    self._waiting.pop(tag, None)
                raise BrokerAccountError(
                    f"the MQTT broker did not answer {len(batch)} account commands within "
                    f"{self.timeout:.0f} s"
                )
            with self._lock:
                responses = self._responses.pop(tag, None)
                self._waiting.pop(tag, None)
            if responses is None:
                raise BrokerAccountError(
                    f"the MQTT broker dropped the admin connection ({self._lost}) while "
                    f"{len(batch)} account commands were under way"
                )
            if len(responses) != len(batch):
                raise BrokerAccountError(
                    f"the MQTT broker answered {len(responses)} of {len(batch)} account commands"
                )
            out.extend(responses)
        return out

    def _check(self, commands: Sequence[dict[str, Any]], ok: Iterable[str] = ()) -> list[str]:
        """Execute; raise on any error not in ``ok``; return each command's error or ''."""
        allowed = set(ok)
        errors = []
        for command, response in zip(commands, self.execute(commands), strict=True):
            error = str(response.get("error") or "")
            if error and error not in allowed:
                target = command.get("username") or command.get("rolename") or ""
                raise BrokerAccountError(f"{command['command']} {target}: {error}")
            errors.append(error)
        return errors

    def put_devices(
        self,
        accounts: Sequence[tuple[DeviceAccount, str]],
        progress: Callable[[int], object] | None = None,
        group: int = 5000,
    ) -> int:
        """Create or update device accounts with their passwords and their own role, a
        group of devices per control message. Returns how many accounts were new."""
        new = 0
        for i in range(0, len(accounts), group):
            part = accounts[i : i + group]
            new += self._put_group(part)
            if progress is not None:
                progress(len(part))
        return new

    def _put_group(self, accounts: Sequence[tuple[DeviceAccount, str]]) -> int:
        creates: list[dict[str, Any]] = []
        for account, password in accounts:
            creates.append(
                {"command": "createRole", "rolename": account.role, "acls": account.acls()}
            )
            creates.append(
                {
                    "command": "createClient",
                    "username": account.username,
                    "password": password,
                    "roles": [{"rolename": account.role}],
                }
            )
        errors = self._check(creates, ok={"Role already exists", "Client already exists"})
        updates: list[dict[str, Any]] = []
        new = 0
        for i, (account, password) in enumerate(accounts):
            role_error, client_error = errors[2 * i], errors[2 * i + 1]
            if role_error:
                updates.append(
                    {"command": "modifyRole", "rolename": account.role, "acls": account.acls()}
                )
            if client_error:
                updates.append(
                    {
                        "command": "modifyClient",
                        "username": account.username,
                        "password": password,
                        "roles": [{"rolename": account.role}],
                    }
                )
            else:
                new += 1
        if updates:
            self._check(updates)
        return new

    def delete_devices(self, accounts: Iterable[DeviceAccount]) -> None:
        """Remove device accounts; connected devices are disconnected at once."""
        commands: list[dict[str, Any]] = []
        for account in accounts:
            commands.append({"command": "deleteClient", "username": account.username})
            commands.append({"command": "deleteRole", "rolename": account.role})
        if commands:
            self._check(commands, ok={"Client not found", "Role not found"})

    def set_password(self, username: str, password: str) -> None:
        self._check([{"command": "setClientPassword", "username": username, "password": password}])

    def set_platform_account(self, username: str, password: str) -> None:
        """Make sure the platform account exists with this password and its role."""
        role = {"command": "createRole", "rolename": PLATFORM_ROLE, "acls": platform_acls()}
        client = {
            "command": "createClient",
            "username": username,
            "password": password,
            "roles": [{"rolename": PLATFORM_ROLE}],
        }
        _, exists = self._check([role, client], ok={"Role already exists", "Client already exists"})
        if exists:
            self._check(
                [
                    {
                        "command": "modifyClient",
                        "username": username,
                        "password": password,
                        "roles": [{"rolename": PLATFORM_ROLE}],
                    }
                ]
            )

    def usernames(self, prefix: str = "") -> set[str]:
        """Every account the broker holds (optionally only those starting with ``prefix``)."""
        names: set[str] = set()
        offset, page = 0, 10_000
        while True:
            command = {"command": "listClients", "verbose": False, "count": page, "offset": offset}
            [response] = self.execute([command])
            if response.get("error"):
                raise BrokerAccountError(f"listClients: {response['error']}")
            data = response.get("data") or {}
            batch = [str(c) for c in data.get("clients", [])]
            names.update(n for n in batch if n.startswith(prefix))
            offset += len(batch)
            if not batch or offset >= int(data.get("totalCount", 0)):
                return names
