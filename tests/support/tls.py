"""Certificates for TLS tests, made with `cryptography`: a CA, and server or client certificates it signs.

`CertificateAuthority.create` makes a CA in a directory; `issue` writes a certificate and its key there as PEM
files, for chosen host names (DNS names or IP addresses), optionally expired already. Keys are unencrypted
PKCS#8, which Kafka's PEM keystores, Mosquitto, hypercorn and Python's ssl module all read.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as PEM files and as PEM text (Kafka takes the text inline)."""

    cert_file: Path
    key_file: Path

    @property
    def cert_pem(self) -> str:
        """The certificate in PEM."""
        return self.cert_file.read_text(encoding="ascii")

    @property
    def key_pem(self) -> str:
        """The unencrypted PKCS#8 private key in PEM."""
        return self.key_file.read_text(encoding="ascii")


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA whose certificate is `ca_file`; it signs what `issue` makes."""

    directory: Path
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls, directory: Path, name: str = "borobridge test CA") -> CertificateAuthority:
        """A new CA valid from an hour ago for a day, its certificate written to ``directory/<name>.crt``."""
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
        authority = cls(directory, key, certificate)
        authority.ca_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return authority

    @property
    def ca_file(self) -> Path:
        """The CA certificate in PEM: what a peer configures as its CA file."""
        return self.directory / "ca.crt"

    def issue(
        self, name: str, hosts: Sequence[str] = LOOPBACK, *, expired: bool = False, client: bool = False
    ) -> Issued:
        """A certificate for ``hosts`` (the first is its common name) written as ``<name>.crt`` and ``<name>.key``.

        ``expired``: valid for a day that ended a day ago. ``client``: for TLS client authentication.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        start, end = (now - dt.timedelta(days=2), now - dt.timedelta(days=1)) if expired else (now, now)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start - dt.timedelta(minutes=5))
            .not_valid_after(end + dt.timedelta(hours=12))
            .add_extension(x509.SubjectAlternativeName([_general_name(host) for host in hosts]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        issued = Issued(self.directory / f"{name}.crt", self.directory / f"{name}.key")
        issued.cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        issued.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        issued.key_file.chmod(0o600)
        return issued


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
