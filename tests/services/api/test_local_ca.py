"""The data dir's local CA and the submission certificate it issues (services/api/submission/local_ca.py):
made once and kept, re-issued when the names change, verified by a real TLS handshake on every
loopback name and address."""
from __future__ import annotations

import socket
import ssl
import threading

from cryptography import x509

from services.api.submission import local_ca
from services.api.submission.tls import server_context
from shared.settings import Settings


def names_of(pem_path) -> set[str]:
    pem = pem_path.read_bytes()
    cert = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN CERTIFICATE-----"):])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)) | {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def handshake(ctx: ssl.SSLContext, ca, family: int, address: str, server_hostname: str) -> str:
    """A TLS handshake to a server with ``ctx``, verified by a client that trusts only ``ca``."""
    with socket.socket(family) as srv:
        srv.bind((address, 0))
        srv.listen()
        errors: list[Exception] = []

        def serve() -> None:
            conn, _ = srv.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError) as exc:
                errors.append(exc)
        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with socket.create_connection((address, srv.getsockname()[1]), timeout=10) as raw:
                with ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname=server_hostname) as tls:
                    return str(tls.version())
        finally:
            thread.join(10)


def test_the_certificate_verifies_by_every_loopback_name_and_the_public_host(tmp_path):
    settings = Settings(data_dir=tmp_path, public_url="https://mail.example.org")
    ctx, ca = server_context(settings), tmp_path / local_ca.CA_CERT_NAME
    for family, address, name in [(socket.AF_INET, "127.0.0.1", "127.0.0.1"), (socket.AF_INET6, "::1", "::1"),
                                  (socket.AF_INET, "127.0.0.1", "localhost"),
                                  (socket.AF_INET, "127.0.0.1", "mail.example.org"),
                                  (socket.AF_INET, "127.0.0.1", "postline.localhost")]:
        assert handshake(ctx, ca, family, address, name).startswith("TLSv1."), name


def test_a_name_not_on_the_certificate_is_refused(tmp_path):
    settings = Settings(data_dir=tmp_path)
    ctx = server_context(settings)
    try:
        handshake(ctx, tmp_path / local_ca.CA_CERT_NAME, socket.AF_INET, "127.0.0.1", "elsewhere.example")
    except ssl.SSLCertVerificationError as exc:
        assert "elsewhere.example" in str(exc)
    else:
        raise AssertionError("a certificate for another name was accepted")


def test_ca_is_made_once_and_kept_while_names_change(tmp_path):
    first = local_ca.ensure(Settings(data_dir=tmp_path))
    key = tmp_path / local_ca.CA_KEY_NAME
    assert key.stat().st_mode & 0o777 == 0o600 and first.server_pem.stat().st_mode & 0o777 == 0o600
    ca, ca_key, server = first.ca_cert.read_bytes(), key.read_bytes(), first.server_pem.read_bytes()
    assert names_of(first.server_pem) == {"localhost", "127.0.0.1", "::1", "postline.localhost"}

    again = local_ca.ensure(Settings(data_dir=tmp_path))  # a restart with the same settings: nothing new
    assert (again.ca_cert.read_bytes(), key.read_bytes(), again.server_pem.read_bytes()) == (ca, ca_key, server)

    moved = local_ca.ensure(Settings(data_dir=tmp_path, public_url="https://mx.acme.test:8443"))
    assert moved.ca_cert.read_bytes() == ca and key.read_bytes() == ca_key  # the CA users trust is kept
    assert moved.server_pem.read_bytes() != server and "mx.acme.test" in names_of(moved.server_pem)


def test_a_self_signed_certificate_of_an_earlier_version_is_replaced(tmp_path):
    """Earlier versions wrote a self-signed submission-tls.pem: it is re-issued from the CA."""
    import datetime

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "postline.localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    old = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
           .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.DNSName("postline.localhost")]),
                          critical=False)
           .sign(key, hashes.SHA256()))
    path = tmp_path / local_ca.SERVER_NAME
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()) + old.public_bytes(serialization.Encoding.PEM))
    tls = local_ca.ensure(Settings(data_dir=tmp_path))
    assert handshake(server_context(Settings(data_dir=tmp_path)), tls.ca_cert, socket.AF_INET, "127.0.0.1", "127.0.0.1")


def test_an_operators_certificate_wins(tmp_path):
    """POSTLINE_TLS_CERT/KEY are served as given; no CA is made."""
    made = local_ca.ensure(Settings(data_dir=tmp_path / "elsewhere"))
    settings = Settings(data_dir=tmp_path / "data", tls_cert=made.server_pem, tls_key=made.server_pem)
    assert handshake(server_context(settings), made.ca_cert, socket.AF_INET, "127.0.0.1", "localhost")
    assert not (tmp_path / "data" / local_ca.CA_KEY_NAME).exists()


def _ensure_in_a_process(data_dir: str) -> tuple[bytes, bytes]:
    tls = local_ca.ensure(Settings(data_dir=data_dir))
    return tls.ca_cert.read_bytes(), tls.server_pem.read_bytes()


def test_processes_starting_at_once_share_one_ca(tmp_path):
    """Several API processes (`postline api` ×N over one data dir) create the CA at once: one
    wins, every process serves a certificate that CA issued."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("fork")) as pool:
        results = list(pool.map(_ensure_in_a_process, [str(tmp_path)] * 4))
    ca = x509.load_pem_x509_certificate((tmp_path / local_ca.CA_CERT_NAME).read_bytes())
    assert {ca_pem for ca_pem, _ in results} == {(tmp_path / local_ca.CA_CERT_NAME).read_bytes()}
    for _, server_pem in results:
        served = x509.load_pem_x509_certificate(server_pem[server_pem.index(b"-----BEGIN CERTIFICATE-----"):])
        served.verify_directly_issued_by(ca)
