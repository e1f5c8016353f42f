"""Postline's local certificate authority: the submission listener's certificate when
POSTLINE_TLS_CERT/POSTLINE_TLS_KEY are unset.

SMTP clients verify the server's certificate by default (Django, Rails, Laravel, nodemailer,
PHPMailer): it must name the host they connected to and chain to an issuer they trust. A
self-signed certificate can do neither well, so each data dir gets

- a CA, made once and kept: ``postline-ca-key.pem`` (its key and certificate, mode 0600; the
  key never leaves the data dir) and ``postline-ca.pem`` (the certificate alone: what clients
  are told to trust, e.g. ``SSL_CERT_FILE`` or ``NODE_EXTRA_CA_CERTS``);
- the listener's certificate ``submission-tls.pem`` (key and certificate, mode 0600) issued
  by that CA for ``localhost``, ``127.0.0.1``, ``::1``, POSTLINE_HOSTNAME and the host of
  POSTLINE_PUBLIC_URL (else POSTLINE_HTTP_HOST). It is issued again at start when those
  names change, when it is within ``RENEW_BEFORE`` of expiry, or when another CA issued it
  (such as the self-signed certificate of earlier versions); clients that trust the CA
  notice nothing.

Several API processes may start at once: the CA is created by hard-linking a finished file
(the first link wins, the others read it), and the listener's certificate is replaced
atomically (any of the racing ones is valid: they come from the one CA)."""
from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.settings import Settings

CA_KEY_NAME = "postline-ca-key.pem"
CA_CERT_NAME = "postline-ca.pem"
SERVER_NAME = "submission-tls.pem"
CA_VALID = datetime.timedelta(days=3650)
SERVER_VALID = datetime.timedelta(days=825)  # the longest a user-trusted server certificate may live (Apple's rule)
RENEW_BEFORE = datetime.timedelta(days=30)
ANY_ADDRESS = {"0.0.0.0", "::", ""}


@dataclass(frozen=True)
class LocalTls:
    """Where the files are, and the names the listener's certificate carries."""

    ca_cert: Path
    server_pem: Path
    names: tuple[str, ...]


def server_names(settings: Settings) -> tuple[str, ...]:
    """The names a client may connect by: loopback (by name and address), POSTLINE_HOSTNAME,
    and the host of the public URL (POSTLINE_PUBLIC_URL, else POSTLINE_HTTP_HOST)."""
    names = ["localhost", "127.0.0.1", "::1", settings.hostname.lower()]
    host = (urlsplit(settings.base_url).hostname or "").lower()
    if host not in ANY_ADDRESS:
        names.append(host)
    return tuple(dict.fromkeys(names))


def ensure(settings: Settings) -> LocalTls:
    """The CA (made on first use) and a current listener certificate, as files in the data
    dir. Raises ``OSError`` when the data dir cannot be written or its CA file is damaged."""
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _ca(data_dir)
    names = server_names(settings)
    server = data_dir / SERVER_NAME
    if not _current(server, ca_cert, names):
        _write_replacing(server, _issue(ca_key, ca_cert, names), 0o600)
    return LocalTls(data_dir / CA_CERT_NAME, server, names)


def _ca(data_dir: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    path = data_dir / CA_KEY_NAME
    if not path.exists():
        _write_once(path, _new_ca(), 0o600)
    pem = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(pem, None)
        cert = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE-----"):])
    except (ValueError, TypeError) as exc:
        raise OSError(f"{path} is not a CA key and certificate ({exc}); move it away to make a new CA") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise OSError(f"{path}: not the EC key of a Postline CA; move it away to make a new CA")
    public = data_dir / CA_CERT_NAME
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    if not public.exists() or public.read_bytes() != cert_pem:
        # owner-only like everything in the data dir (0700, so nobody else could reach it anyway):
        # the user who runs Postline points SSL_CERT_FILE / NODE_EXTRA_CA_CERTS at it
        _write_replacing(public, cert_pem, 0o600)
    return key, cert


def _new_ca() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Postline local CA"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"Postline local CA {os.urandom(4).hex()}")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + CA_VALID)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return _key_pem(key) + cert.public_bytes(serialization.Encoding.PEM)


def _issue(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, names: tuple[str, ...]) -> bytes:
    """A fresh key and a server certificate for ``names`` signed by the CA, as one PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(min(now + SERVER_VALID, ca_cert.not_valid_after_utc))
            .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return _key_pem(key) + cert.public_bytes(serialization.Encoding.PEM)


def _current(path: Path, ca_cert: x509.Certificate, names: tuple[str, ...]) -> bool:
    """Whether the listener's certificate at ``path`` can be served as it is."""
    try:
        pem = path.read_bytes()
        cert = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE-----"):])
        cert.verify_directly_issued_by(ca_cert)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False  # missing, unreadable, self-signed or from another CA: issue a new one
    now = datetime.datetime.now(datetime.timezone.utc)
    return (cert.not_valid_after_utc - now > RENEW_BEFORE
            and set(san) == {_general_name(n) for n in names})


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name.encode("idna").decode() if not name.isascii() else name)


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
                         encipher_only=False, decipher_only=False)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _temp_file(path: Path, content: bytes, mode: int) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)  # the umask may have narrowed it
    return tmp


def _write_once(path: Path, content: bytes, mode: int) -> None:
    """Create ``path`` unless another process did first (then theirs is kept)."""
    tmp = _temp_file(path, content, mode)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def _write_replacing(path: Path, content: bytes, mode: int) -> None:
    os.replace(_temp_file(path, content, mode), path)
