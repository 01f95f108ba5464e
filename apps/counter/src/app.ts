import {
  createApp,
  type Express,
  HttpError,
  type Logger,
  methodNotAllowed,
  type ReadinessCheck,
} from "@app/server";
import { StoresUnavailableError, type Visit, type VisitCounter } from "./visit-counter.ts";

export interface CounterAppOptions {
  counter: Pick<VisitCounter, "increment" | "current">;
  logger: Logger;
  readiness: { redis: ReadinessCheck; postgres: ReadinessCheck };
  exposeErrors?: boolean;
}

export function createCounterApp(options: CounterAppOptions): Express {
  const { counter, readiness, ...rest } = options;
  return createApp({
    ...rest,
    // Ready while at least one store works: the counter serves from either.
    readiness: { checks: readiness, require: "any" },
    routes(app) {
      app
        .route("/visits")
        .post(async (req, res) => {
          const key = idempotencyKey(req.get("Idempotency-Key"));
          const visit = await countOr503(() => counter.increment(key));
          res.set("X-Counter-Source", visit.source);
          // The answer to a retry is the first attempt's, and says so.
          if (visit.replayed) res.set("Idempotent-Replayed", "true");
          res.json({ count: visit.count });
        })
        .get(async (_req, res) => {
          const visit = await countOr503(() => counter.current());
          res.set("X-Counter-Source", visit.source).json({ count: visit.count });
        })
        .all(methodNotAllowed(["GET", "HEAD", "POST"]));

      // The tutorial's page, for opening the service directly in development.
      app
        .route("/")
        .get(async (_req, res) => {
          const visit = await countOr503(() => counter.increment());
          res.type("html").send(page(visit.count));
        })
        .all(methodNotAllowed(["GET", "HEAD"]));
    },
  });
}

// A client that may retry a visit (after a timeout or a 502) sends a fresh random
// key per visit (a UUID) and the same key with each retry of it.
const IDEMPOTENCY_KEY = /^[\w.-]{1,128}$/;

function idempotencyKey(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (!IDEMPOTENCY_KEY.test(header)) {
    throw new HttpError(400, "Idempotency-Key must be 1 to 128 letters, digits, '_', '.' or '-'");
  }
  return header;
}

async function countOr503(count: () => Promise<Visit>): Promise<Visit> {
  try {
    return await count();
  } catch (error) {
    if (error instanceof StoresUnavailableError) throw new HttpError(503, error.message);
    throw error;
  }
}

function page(count: number): string {
  return `<!doctype html>
<html lang="en">
  <head><meta charset="utf-8"><title>Visit counter</title></head>
  <body>
    <h1>Hello Docker Universe!</h1>
    <p>This page has been visited ${count} times.</p>
  </body>
</html>
`;
}
