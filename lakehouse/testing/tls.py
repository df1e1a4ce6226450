"""Throw-away TLS material for the test broker's SASL_SSL listener, made at test time.

:func:`make_tls` writes a CA (its certificate as PEM, what clients trust through
``LAKEHOUSE_KAFKA__SSL_CA_LOCATION``) and a server certificate it signed for loopback
(``127.0.0.1`` and ``localhost`` as subject alternative names), kept with its key in a PKCS#12
keystore that the Kafka broker reads. Nothing here is for production: keys are short-lived and
live in the test's temporary directory. Plain ``cryptography`` (a dependency of Prefect's).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    """Where :func:`make_tls` wrote the CA certificate and the server's keystore."""

    ca_pem: Path
    """The CA's certificate (PEM): what clients trust."""
    keystore: Path
    """The server's key and certificate chain (PKCS#12)."""
    keystore_password: str
    """The keystore's password (random)."""


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tls(
    directory: Path,
    *,
    ca_name: str = "lakehouse-test-ca",
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
    days: int = 2,
) -> TlsFiles:
    """Write a fresh CA and a server certificate for ``hosts`` signed by it into ``directory``.

    Args:
        directory: Created if missing; ``ca.pem`` and ``server.p12`` go there.
        ca_name: Common name of the CA (two calls make two unrelated CAs).
        hosts: The server's names: IP addresses and DNS names (subject alternative names).
        days: Validity of both certificates.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(ca_name))
        .issuer_name(_name(ca_name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = directory / "ca.pem"
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    password = secrets.token_urlsafe(18)
    keystore = directory / "server.p12"
    keystore.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"server", key, cert, [ca_cert], serialization.BestAvailableEncryption(password.encode())
        )
    )
    keystore.chmod(0o600)
    return TlsFiles(ca_pem, keystore, password)
