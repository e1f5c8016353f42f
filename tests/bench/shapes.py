"""The workloads the end-to-end bench sends (issue 34): each shape is a send request for
Postline's API and the same message as a client would submit it to Postfix over SMTP.

``receipt_5kb`` is the bench's original shape (a 5 KB HTML receipt, ``html`` field, multi-line,
sent after a warm-up); the others are what senders send and what a fresh service sees:
the seed's ``message`` field with a 4.6 KB HTML body on one line to a service that has sent
nothing yet, a 50 KB marketing receipt with image links, a plain-text alert, one send to ten
recipients, and a 1 MB attachment."""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Callable


@dataclass(frozen=True)
class Shape:
    name: str
    request: Callable[[int, str], dict[str, Any]]   # (i, domain) → the JSON body of POST /emails
    recipients: int = 1                             # deliveries per send
    warm_up: bool = False                           # send WARMUP messages before the clock starts
    scale: float = 1.0                              # share of the run's message count (the 1 MB shape's disk)

    def mime(self, i: int, domain: str) -> tuple[bytes, list[bytes], bytes]:
        """(MAIL FROM, RCPT TOs, message) of ``request(i, domain)`` as a client submits it to an MTA."""
        body = self.request(i, domain)
        to = body["to"] if isinstance(body["to"], list) else [body["to"]]
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = body["from"], ", ".join(to), body["subject"]
        msg["Date"], msg["Message-ID"] = formatdate(), make_msgid(domain=domain)
        html = body.get("html") or body.get("message")
        if html and body.get("text"):
            msg.set_content(body["text"])
            msg.add_alternative(html, subtype="html")
        elif html:
            msg.set_content(html, subtype="html")
        else:
            msg.set_content(body["text"])
        for a in body.get("attachments", []):
            maintype, _, subtype = a["content_type"].partition("/")
            msg.add_attachment(base64.b64decode(a["content"]), maintype=maintype, subtype=subtype, filename=a["filename"])
        sender = f"billing@{domain}".encode()
        return sender, [addr.encode() for addr in to], msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def receipt_html(i: int) -> str:
    """A ~5 KB transactional HTML email (a receipt), distinct per message, one row per line."""
    rows = "".join(f"<tr><td style=\"padding:4px 8px\">Item {n} of order {i}</td>"
                   f"<td style=\"text-align:right\">{n * 7 % 50 + 0.99:.2f} EUR</td></tr>\n" for n in range(40))
    page = (f"<!doctype html><html><body style=\"font-family:sans-serif\"><h1>Receipt #{i}</h1>"
            f"<p>Thanks for your order. Here is what you bought:</p><table>{rows}</table>"
            "<p>Questions? Reply to this email.</p></body></html>")
    return page + "<!--" + "-" * max(0, 5120 - len(page) - 7) + "-->"


def one_line_html(i: int, size: int = 4600) -> str:
    """An HTML email as template engines emit it: ~``size`` bytes with no line break at all."""
    cell = "<td style=\"padding:8px;border-bottom:1px solid #eeeeee;font-family:Helvetica,Arial,sans-serif\">"
    rows, n = [], 0
    while sum(map(len, rows)) < size - 300:
        rows.append(f"<tr>{cell}Line item {n} for order {i}</td>{cell}{n * 3 + 0.5:.2f} USD</td></tr>")
        n += 1
    return f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body><h1>Order {i}</h1><table>{''.join(rows)}</table><p>Thank you!</p></body></html>"


def marketing_html(i: int, size: int = 50 * 1024) -> str:
    """A ~50 KB marketing-style receipt: nested tables, inline styles, images as links."""
    block = ("<tr><td class=\"product\" style=\"padding:12px 24px;border-top:1px solid #e5e5e5\">\n"
             "  <table role=\"presentation\" width=\"100%\"><tr>\n"
             "    <td width=\"120\"><img src=\"https://cdn.acme.test/img/p{n}.jpg?w=240&amp;h=240\" width=\"120\" height=\"120\" alt=\"Product {n}\" style=\"display:block;border:0\"></td>\n"
             "    <td style=\"font:14px/20px Helvetica,Arial,sans-serif;color:#333333;padding-left:16px\"><b>Product {n}</b><br>"
             "Size M · Colour blue · Qty 1<br><a href=\"https://shop.acme.test/p/{n}?utm_source=email&amp;utm_campaign=receipt-{i}\" "
             "style=\"color:#0066cc\">View item</a></td>\n"
             "    <td align=\"right\" style=\"font:bold 14px Helvetica,Arial,sans-serif\">{price:.2f} EUR</td>\n"
             "  </tr></table>\n</td></tr>\n")
    head = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Your order {i}</title></head>\n"
            "<body style=\"margin:0;background:#f4f4f4\"><table role=\"presentation\" width=\"100%\"><tr><td align=\"center\">\n"
            "<table role=\"presentation\" width=\"600\" style=\"background:#ffffff\">\n"
            "<tr><td><img src=\"https://cdn.acme.test/img/header.png\" width=\"600\" alt=\"Acme\"></td></tr>\n")
    parts, n = [head], 0
    while sum(map(len, parts)) < size - 200:
        parts.append(block.format(n=n, i=i, price=n * 13 % 200 + 9.99))
        n += 1
    return "".join(parts) + "</table></td></tr></table></body></html>"


ATTACHMENT = hashlib.shake_256(b"postline bench attachment").digest(1024 * 1024)  # 1 MB, incompressible
ATTACHMENT_B64 = base64.b64encode(ATTACHMENT).decode()


SHAPES = [
    Shape("receipt_5kb", lambda i, d: {"from": f"Acme <billing@{d}>", "to": f"user{i}@example.com",
                                       "subject": f"Receipt #{i}", "html": receipt_html(i)}, warm_up=True),
    Shape("seed_message_4kb_one_line", lambda i, d: {"from": f"Acme <billing@{d}>", "to": f"user{i}@example.com",
                                                     "subject": f"Order {i}", "message": one_line_html(i)}),
    Shape("marketing_50kb", lambda i, d: {"from": f"Acme <billing@{d}>", "to": f"user{i}@example.com",
                                          "subject": f"Your order {i} is on its way", "html": marketing_html(i)}),
    Shape("text_alert", lambda i, d: {"from": f"Alerts <billing@{d}>", "to": f"oncall{i}@example.com",
                                      "subject": f"[ALERT] disk 91% on db-{i % 7}",
                                      "text": f"Host db-{i % 7} crossed 90% disk usage at check {i}.\n"
                                              "Runbook: https://wiki.acme.test/runbooks/disk\n"}),
    Shape("ten_recipients", lambda i, d: {"from": f"Acme <billing@{d}>",
                                          "to": [f"team{i}-{k}@example.com" for k in range(10)],
                                          "subject": f"Weekly report {i}", "html": receipt_html(i)}, recipients=10, scale=0.1),
    Shape("attachment_1mb", lambda i, d: {"from": f"Acme <billing@{d}>", "to": f"user{i}@example.com",
                                          "subject": f"Invoice {i}", "html": f"<p>Your invoice {i} is attached.</p>",
                                          "attachments": [{"filename": f"invoice-{i}.pdf", "content": ATTACHMENT_B64,
                                                           "content_type": "application/pdf"}]}, scale=0.1),
]
BY_NAME = {s.name: s for s in SHAPES}
