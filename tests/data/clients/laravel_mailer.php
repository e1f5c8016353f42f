<?php
// Laravel's SMTP mailer from its MAIL_* environment, built as Laravel's MailManager builds it
// (Symfony Mailer, Debian's php-symfony-mailer): MAIL_ENCRYPTION=tls on a port other than 465
// is the "smtp" scheme, which upgrades with STARTTLS and verifies the certificate with PHP's
// OpenSSL defaults (SSL_CERT_FILE honoured). Driven by tests/services/api/test_submission.py.
// Usage: MAIL_HOST=… MAIL_PORT=… MAIL_USERNAME=… MAIL_PASSWORD=… MAIL_ENCRYPTION=tls php laravel_mailer.php SUBJECT
require_once "/usr/share/php/Symfony/Component/Mailer/autoload.php";
require_once "/usr/share/php/Symfony/Component/Mime/autoload.php";

use Symfony\Component\Mailer\Mailer;
use Symfony\Component\Mailer\Transport\Dsn;
use Symfony\Component\Mailer\Transport\Smtp\EsmtpTransportFactory;
use Symfony\Component\Mime\Email;

$port = (int) getenv("MAIL_PORT");
$scheme = getenv("MAIL_ENCRYPTION") === "tls" ? ($port === 465 ? "smtps" : "smtp") : "";
$transport = (new EsmtpTransportFactory())->create(
    new Dsn($scheme, getenv("MAIL_HOST"), getenv("MAIL_USERNAME"), getenv("MAIL_PASSWORD"), $port));
$email = (new Email())->from("Acme <hello@acme.test>")->to("bob@example.com")->subject($argv[1])
    ->text("Sent by Symfony Mailer with Laravel's MAIL_* settings.");
(new Mailer($transport))->send($email);
echo "delivered\n";
