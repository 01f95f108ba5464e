import {
  createApp,
  type Express,
  HttpError,
  type Logger,
  methodNotAllowed,
  type ReadinessCheck,
} from "@app/server";
import { CounterUnavailableError, type VisitCounter } from "./visit-counter.ts";

export interface CounterAppOptions {
  counter: Pick<VisitCounter, "increment" | "current">;
  logger: Logger;
  readiness: { postgres: ReadinessCheck; redis: ReadinessCheck };
  exposeErrors?: boolean;
}

export function createCounterApp(options: CounterAppOptions): Express {
  const { counter, readiness, ...rest } = options;
  return createApp({
    ...rest,
    // Counting needs PostgreSQL; the cache is reported, but the app works without it.
    readiness: { checks: readiness, optional: ["redis"] },
    routes(app) {
      app
        .route("/visits")
        .post(async (req, res) => {
          const key = idempotencyKey(req.get("Idempotency-Key"));
          const visit = await orUnavailable(counter.increment(key));
          res.set("X-Counter-Source", "postgres");
          // The answer to a retry is the first attempt's, and says so.
          if (visit.replayed) res.set("Idempotent-Replayed", "true");
          // Counted, but the cache could not be told: reads may miss it for a few seconds.
          if (!visit.cached) res.set("X-Counter-Cache", "missed");
          res.json({ count: visit.count });
        })
        .get(async (_req, res) => {
          const reading = await orUnavailable(counter.current());
          res.set("X-Counter-Source", reading.source);
          // From the cache while PostgreSQL is unreachable: visits may have been counted since.
          if (reading.stale) res.set("X-Counter-Stale", "true");
          res.json({ count: reading.count });
        })
        .all(methodNotAllowed(["GET", "HEAD", "POST"]));

      // The tutorial's page, for opening the service directly in development.
      app
        .route("/")
        // Express would answer HEAD with the GET handler: an uptime probe would count.
        .head((_req, res) => {
          res.type("html").end();
        })
        .get(async (_req, res) => {
          const visit = await orUnavailable(counter.increment());
          res.type("html").send(page(visit.count));
        })
        .all(methodNotAllowed(["GET", "HEAD"]));
    },
  });
}

// A client that may retry a visit (after a timeout or a 502) sends a fresh random
// key per visit (a UUID) and the same key with each retry of it. ':' separates the
// namespaces Nginx puts keys in (its default.conf.template, $visit_key).
const IDEMPOTENCY_KEY = /^[\w.:-]{1,128}$/;

function idempotencyKey(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (!IDEMPOTENCY_KEY.test(header)) {
    throw new HttpError(
      400,
      "Idempotency-Key must be 1 to 128 letters, digits, '_', '.', ':' or '-'",
    );
  }
  return header;
}

async function orUnavailable<T>(result: Promise<T>): Promise<T> {
  try {
    return await result;
  } catch (error) {
    if (error instanceof CounterUnavailableError) throw new HttpError(503, error.message);
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
