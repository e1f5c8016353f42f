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
  batchWith: () => resend.batch.send(args.emails, { batchValidation: args.mode }),
  // several calls in one process: [{call: "webhooks.events.list", args: [...]}, …]; in args, a
  // string "$<i>.<a>.<b>" is the i-th call's {data, error} at that path (ids of earlier calls)
  calls: async () => {
    const out = [];
    const ref = (v) => typeof v === "string" && /^\$\d+\./.test(v)
      ? v.slice(1).split(".").reduce((o, k) => o?.[k], out) : v;
    const fill = (v) => Array.isArray(v) ? v.map(fill)
      : v && typeof v === "object" ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fill(x)])) : ref(v);
    for (const c of args.calls) {
      const path = c.call.split(".");
      const owner = path.slice(0, -1).reduce((o, k) => o[k], resend);
      const { data, error } = await owner[path.at(-1)](...fill(c.args || []));
      out.push({ data, error });
    }
    return { data: out, error: null };
  },
};

const { data, error } = await cases[name]();
process.stdout.write(JSON.stringify({ data, error }) + "\n");
