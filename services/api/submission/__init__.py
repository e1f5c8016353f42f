"""SMTP submission (docs/submission.md): apps that only speak SMTP send through the same pipeline as
``POST /emails``. ``server`` wires aiosmtpd, ``message`` turns the submitted MIME into what
the pipeline needs, ``replies`` maps the pipeline's refusals to SMTP replies, ``tls`` gives
the certificate."""
