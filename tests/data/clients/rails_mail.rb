# Rails's SMTP delivery as Action Mailer does it: the `smtp_settings` hash handed to the mail gem
# (Debian's ruby-mail), OpenSSL verifying the server with its defaults (SSL_CERT_FILE honoured).
# Driven by tests/services/api/test_submission.py.
# Usage: ruby rails_mail.rb '<smtp_settings hash literal, as in the README>' SUBJECT
require "mail"

settings = eval(ARGV[0]) # the README's literal, with the test's port and key
subject = ARGV[1]
Mail.defaults { delivery_method :smtp, settings }
Mail.deliver do
  from "Acme <hello@acme.test>"
  to "bob@example.com"
  subject subject
  body "Sent by the mail gem with Rails's smtp_settings."
end
puts "delivered"
