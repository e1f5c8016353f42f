// One call of Resend's Node SDK (npm `resend`, pinned in package.json), unchanged, pointed
// at Postline by RESEND_BASE_URL only. Usage: node run.mjs <case> '<json args>'.
// Prints {data, error} as the SDK returned it (headers left out), one JSON line.
import { Resend } from "resend";

const [, , name, rawArgs] = process.argv;
const args = JSON.parse(rawArgs || "{}");
const resend = new Resend(process.env.RESEND_API_KEY);

const cases = {
  send: () => resend.emails.send(args.email),
  // the attachment as a Buffer: the SDK base64-encodes it into `content`
  sendWithAttachment: () => resend.emails.send({
    ...args.email,
    attachments: [{ filename: args.filename, content: Buffer.from(args.content, "utf8") }],
  }),
  batch: () => resend.batch.send(args.emails),
  get: () => resend.emails.get(args.id),
  update: () => resend.emails.update({ id: args.id, scheduledAt: args.scheduledAt }),
  cancel: () => resend.emails.cancel(args.id),
};

const { data, error } = await cases[name]();
process.stdout.write(JSON.stringify({ data, error }) + "\n");
