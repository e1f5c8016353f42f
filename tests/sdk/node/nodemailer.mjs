// nodemailer (npm, pinned in package.json) with its defaults: STARTTLS when the server offers it
// and the certificate verified against Node's roots plus NODE_EXTRA_CA_CERTS. Driven by
// tests/services/api/test_submission.py. Usage: node nodemailer.mjs '<json {host, port, user, pass, message}>'.
// Prints {response, accepted} of the sent message, one JSON line; exits non-zero on an error.
import nodemailer from "nodemailer";

const { host, port, user, pass, message } = JSON.parse(process.argv[2]);
const transport = nodemailer.createTransport({ host, port, auth: { user, pass } });
const info = await transport.sendMail(message);
process.stdout.write(JSON.stringify({ response: info.response, accepted: info.accepted }) + "\n");
