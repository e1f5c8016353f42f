"""The submission listener's TLS context: POSTLINE_TLS_CERT/POSTLINE_TLS_KEY when set, else a
certificate from the data dir's local CA (services/api/submission/local_ca.py)."""
from __future__ import annotations

import ssl

from services.api.submission import local_ca
from shared.settings import Settings


def server_context(settings: Settings) -> ssl.SSLContext:
    """Server-side context (TLS 1.2+). Raises ``ssl.SSLError``/``OSError`` for an unusable
    certificate or key, which stops the process at start-up."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.tls_cert:
        ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
    else:
        ctx.load_cert_chain(local_ca.ensure(settings).server_pem)
    return ctx


def trust_lines(settings: Settings) -> list[str]:
    """What the start-up banner says about the submission certificate: whose it is and, for
    the local CA's, how a client trusts it (Python's ssl, Ruby's and PHP's OpenSSL read
    SSL_CERT_FILE; Node adds NODE_EXTRA_CA_CERTS to its own roots)."""
    if settings.tls_cert:
        return [f"SMTP TLS certificate: {settings.tls_cert} (POSTLINE_TLS_CERT)"]
    tls = local_ca.ensure(settings)
    ca = tls.ca_cert.resolve()
    return [f"SMTP TLS certificate: for {', '.join(tls.names)}, from this data dir's local CA {ca}",
            f"  trust the CA in your app's environment: SSL_CERT_FILE={ca} (Python/Django, Ruby/Rails, PHP/Laravel), "
            f"NODE_EXTRA_CA_CERTS={ca} (Node/nodemailer)",
            f"  or system-wide (Debian/Ubuntu): sudo cp {ca} /usr/local/share/ca-certificates/postline-ca.crt "
            "&& sudo update-ca-certificates"]
