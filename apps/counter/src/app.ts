import {
  createApp,
  type Express,
  HttpError,
  type Logger,
  methodNotAllowed,
  type ReadinessCheck,
  type ReadinessOptions,
} from "@app/server";
import type { VisitCounter } from "./visit-counter.ts";

export interface CounterAppOptions {
  counter: Pick<VisitCounter, "increment" | "current">;
  logger: Logger;
  readiness: { postgres: ReadinessCheck; redis: ReadinessCheck };
  exposeErrors?: boolean;
}

// A client that may retry a visit (after a timeout or a 502) sends a fresh random
// key per visit (a UUID) and the same key with each retry of it. ':' separates the
// namespaces Nginx puts keys in (its default.conf.template, $visit_key).
const IDEMPOTENCY_KEY = /^[\w.:-]{1,128}$/;

/** The counter's readiness: counting needs PostgreSQL; the cache is reported, but optional. */
export function counterReadiness(checks: CounterAppOptions["readiness"]): ReadinessOptions {
  return { checks, optional: ["redis"] };
}

export function createCounterApp(options: CounterAppOptions): Express {
  const { counter, readiness, ...rest } = options;
  return createApp({
    ...rest,
    readiness: counterReadiness(readiness),
    routes(app) {
      app
        .route("/visits")
        .post(async (req, res) => {
          const key = req.get("Idempotency-Key");
          if (key !== undefined && !IDEMPOTENCY_KEY.test(key)) {
            throw new HttpError(
              400,
              "Idempotency-Key must be 1 to 128 letters, digits, '_', '.', ':' or '-'",
            );
          }
          const visit = await counter.increment(key);
          // The answer to a retry is the first attempt's, and says so.
          if (visit.replayed) res.set("Idempotent-Replayed", "true");
          res.json({ count: visit.count });
        })
        .get(async (_req, res) => {
          const reading = await counter.current();
          // Whether the count came from Redis (hit) or PostgreSQL (miss): watch cache-aside work.
          res.set("X-Cache", reading.cache);
          res.json({ count: reading.count });
        })
        .all(methodNotAllowed(["GET", "HEAD", "POST"]));
    },
  });
}
