"""The submission listener's TLS context: POSTLINE_TLS_CERT/POSTLINE_TLS_KEY when set, else a
self-signed certificate generated once into ``<data dir>/submission-tls.pem`` (key and
certificate in one file, mode 0600)."""
from __future__ import annotations

import datetime
import os
import ssl
from pathlib import Path

from shared.settings import Settings

SELF_SIGNED_NAME = "submission-tls.pem"
VALID_DAYS = 3650


def self_signed_pem(hostname: str) -> bytes:
    """A fresh EC P-256 key and a self-signed certificate for ``hostname``, as one PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
            + cert.public_bytes(serialization.Encoding.PEM))


def self_signed_path(data_dir: Path, hostname: str) -> Path:
    """The data dir's certificate file, created on first use. Several API processes may
    start at once: each writes its own temporary file and the first hard link wins, so they
    all end up serving the same certificate."""
    path = Path(data_dir) / SELF_SIGNED_NAME
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{SELF_SIGNED_NAME}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(self_signed_pem(hostname))
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path


def server_context(settings: Settings) -> ssl.SSLContext:
    """Server-side context (TLS 1.2+). Raises ``ssl.SSLError``/``OSError`` for an unusable
    certificate or key, which stops the process at start-up."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.tls_cert:
        ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
    else:
        ctx.load_cert_chain(self_signed_path(settings.data_dir, settings.hostname))
    return ctx
