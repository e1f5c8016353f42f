// Resend's Node SDK (npm `resend`, pinned in package.json) on Postline's templates, unchanged
// but for RESEND_BASE_URL. Usage: node templates.mjs <case> '<json args>'. Prints {data, error}.
import { Resend } from "resend";

const [, , name, rawArgs] = process.argv;
const args = JSON.parse(rawArgs || "{}");
const resend = new Resend(process.env.RESEND_API_KEY);

const cases = {
  // the SDK's chain: create, then publish what was created
  createAndPublish: () => resend.templates.create(args.template).publish(),
  get: () => resend.templates.get(args.id),
  list: () => resend.templates.list({ limit: args.limit }),
  update: () => resend.templates.update(args.id, args.changes),
  duplicate: () => resend.templates.duplicate(args.id),
  remove: () => resend.templates.remove(args.id),
  send: () => resend.emails.send(args.email),
};

const { data, error } = await cases[name]();
process.stdout.write(JSON.stringify({ data, error }) + "\n");
