"""The device broker's certificates: a city CA, the broker's server certificate, and
optional per-device client certificates whose common name is the device's MQTT user.

Keys are ECDSA P-256; files are PEM. The CA key never leaves the machine that runs the
onboarding; the broker needs only the CA certificate and its own key pair.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 825
CLIENT_DAYS = 825


@dataclass(frozen=True)
class Authority:
    """A CA on disk: its certificate (public) and key (private, mode 0600)."""

    cert_file: Path
    key_file: Path

    def load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"{self.key_file} is not an EC private key")
        return cert, key


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)


def _write(path: Path, data: bytes, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    tmp.replace(path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ensure_ca(directory: Path, name: str = "CityOps device CA") -> Authority:
    """The CA under ``directory`` (``ca.crt``, ``ca.key``), created if absent."""
    authority = Authority(directory / "ca.crt", directory / "ca.key")
    if authority.cert_file.exists() and authority.key_file.exists():
        return authority
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(authority.key_file, _key_pem(key), private=True)
    _write(authority.cert_file, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return authority


def _issue(
    authority: Authority,
    common_name: str,
    usage: x509.ObjectIdentifier,
    days: int,
    sans: list[x509.GeneralName] | None = None,
) -> tuple[bytes, bytes]:
    ca_cert, ca_key = authority.load()
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def ensure_server_cert(
    authority: Authority, directory: Path, hosts: list[str] | None = None
) -> tuple[Path, Path]:
    """The broker's certificate and key under ``directory``, issued by ``authority`` for
    ``localhost``, 127.0.0.1, this machine's name and ``hosts``; created if absent."""
    cert_file, key_file = directory / "server.crt", directory / "server.key"
    if cert_file.exists() and key_file.exists():
        return cert_file, key_file
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname(), *(hosts or [])]
    sans: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    cert, key = _issue(authority, names[3], ExtendedKeyUsageOID.SERVER_AUTH, SERVER_DAYS, sans)
    _write(key_file, key, private=True)
    _write(cert_file, cert, private=False)
    return cert_file, key_file


def issue_client_cert(authority: Authority, username: str) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a device whose MQTT user name is ``username``: the
    broker's certificate listener takes the common name as the user name."""
    return _issue(authority, username, ExtendedKeyUsageOID.CLIENT_AUTH, CLIENT_DAYS)
