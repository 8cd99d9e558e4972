"""TLS for every client of the bridge: the client context from a ``*.tls`` section, and what a failure means.

OpenSSL's reasons ("certificate verify failed: unable to get local issuer certificate") name neither the
setting nor the fix. :func:`explain` turns an ssl error anywhere in an exception's chain into one sentence that
does; :func:`probe` shakes hands with a server once more to find that error when a client library (Kafka's, MQTT's)
kept only its own message. A TLS setting never falls back to plaintext: a failed handshake is an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Final, Protocol

from borobridge.errors import ConfigError

PROBE_TIMEOUT: Final = 5.0
ALERT_WAIT: Final = 1.0  # after a TLS 1.3 handshake, how long to wait for the server's verdict on our certificate

# OpenSSL X509_V_ERR_* codes (ssl.SSLCertVerificationError.verify_code)
_UNTRUSTED: Final = frozenset({2, 18, 19, 20, 21})  # no issuer, self-signed (in chain), cannot verify leaf
_NOT_YET_VALID: Final = 9
_EXPIRED: Final = 10
_WRONG_HOST: Final = frozenset({62, 64})  # host name mismatch, IP address mismatch

_NOT_TLS: Final = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "RECORD_LAYER_FAILURE",
        "PACKET_LENGTH_TOO_LONG",
        "HTTP_REQUEST",
        "UNEXPECTED_EOF_WHILE_READING",
    }
)
_CERTIFICATE_REQUIRED: Final = frozenset({"TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_HANDSHAKE_FAILURE"})
_CERTIFICATE_REFUSED: Final = frozenset(
    {
        "TLSV1_ALERT_UNKNOWN_CA",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "TLSV1_ALERT_ACCESS_DENIED",
    }
)


class TlsFiles(Protocol):
    """The files of a ``kafka.tls``, ``mqtt.tls`` or ``boro.tls`` section."""

    @property
    def ca_file(self) -> str | None: ...

    @property
    def cert_file(self) -> str | None: ...

    @property
    def key_file(self) -> str | None: ...


def client_context(files: TlsFiles, section: str, *, check_hostname: bool = True) -> ssl.SSLContext:
    """A client context trusting ``ca_file`` (the system's CAs without it), with the client certificate when set.

    ConfigError names the ``section`` key whose file cannot be read or is not PEM.
    """
    try:
        context = ssl.create_default_context(cafile=files.ca_file)
    except (OSError, ssl.SSLError) as exc:
        key = _key(section, "ca_file")
        raise ConfigError([_unreadable(key, files.ca_file, exc)]) from exc
    context.check_hostname = check_hostname
    if files.cert_file is not None:
        try:
            context.load_cert_chain(files.cert_file, files.key_file)
        except (OSError, ssl.SSLError) as exc:
            key = _key(section, "cert_file/key_file")
            raise ConfigError([_unreadable(key, files.cert_file, exc)]) from exc
    elif files.key_file is not None:
        raise ConfigError([_key_without_certificate(section)])
    return context


def _key(section: str, name: str) -> str:
    return f"{section}.{name}"


def _unreadable(key: str, path: str | None, exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"{key}: {path!r} is not a PEM certificate and key OpenSSL can read ({exc.reason or exc})"
    return f"{key}: cannot read the TLS file {path!r} ({exc.strerror or exc})"


def _key_without_certificate(section: str) -> str:
    return f"{section}.key_file: set {section}.cert_file too (the certificate of that key)"


def explain(error: BaseException, section: str, address: str) -> str | None:
    """What an ssl error in ``error``'s chain (causes and contexts) means, naming the setting; None without one."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return _explained(current, section, address)
        current = current.__cause__ or current.__context__
    return None


def _explained(error: ssl.SSLError, section: str, address: str) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return _certificate_refused(error, section, address)
    reason = getattr(error, "reason", None) or ""  # set by the ssl module, not on an error made by hand
    if isinstance(error, ssl.SSLEOFError) or reason in _NOT_TLS:
        return _not_tls(section, address)
    if reason in _CERTIFICATE_REQUIRED:
        return (
            f"TLS: the server at {address} requires a client certificate; set {section}.cert_file and "
            f"{section}.key_file"
        )
    if reason in _CERTIFICATE_REFUSED:
        return (
            f"TLS: the server at {address} refused the client certificate ({section}.cert_file, {reason}); use one "
            "signed by a CA the server trusts, and valid now"
        )
    return f"TLS: the handshake with {address} failed: {reason or error}"


def _certificate_refused(error: ssl.SSLCertVerificationError, section: str, address: str) -> str:
    """Why the bridge refused the server's certificate."""
    host = address.rpartition(":")[0].strip("[]") or address
    because = {
        _EXPIRED: "has expired; renew it on the server",
        _NOT_YET_VALID: "is not valid yet; check the clocks of the server and the bridge",
    }.get(error.verify_code, f"was refused: {error.verify_message}")
    if error.verify_code in _UNTRUSTED:
        because = (
            f"is not signed by the configured CA ({section}.ca_file); set {section}.ca_file to the CA that signed it"
        )
    elif error.verify_code in _WRONG_HOST:
        because = (
            f"is not valid for the host name {host}; connect by a name the certificate lists, or have it "
            "reissued for this one"
        )
    return f"TLS: the server's certificate at {address} {because}"


async def probe(
    host: str, port: int, context: ssl.SSLContext, section: str, *, seconds: float = PROBE_TIMEOUT
) -> str | None:
    """Shake hands with ``host:port`` as a client with ``context``: what fails, explained, or None.

    After the handshake it waits a moment for the server's alert: under TLS 1.3 a server refuses a client
    certificate (or its absence) only once the client has finished its part. A server that cannot be reached
    at all is not a TLS problem (None).
    """
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        async with asyncio.timeout(seconds):
            reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return None
    try:
        async with asyncio.timeout(seconds):
            await writer.start_tls(context, server_hostname=host)
        async with asyncio.timeout(ALERT_WAIT):
            await reader.read(1)
    except ssl.SSLError as exc:
        return _explained(exc, section, address)
    except TimeoutError:
        return None if writer.get_extra_info("ssl_object") is not None else _not_tls(section, address)
    except OSError:
        return _not_tls(section, address)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
    return None


def _not_tls(section: str, address: str) -> str:
    return (
        f"TLS: {address} does not answer in TLS (a plaintext port?); {section} is set, so the bridge speaks "
        "only TLS: give the address of the server's TLS port"
    )
