import { z } from "zod";

// Building blocks every app schema reuses, so the same variable means the same
// thing (and fails the same way) in every service.

export const port = (defaultPort: number) =>
  z.coerce.number().int().min(1).max(65_535).default(defaultPort);

export const nodeEnv = z.enum(["development", "production", "test"]).default("development");

export const logLevel = z
  .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
  .default("info");

/**
 * A duration that must be above 0 (a deadline, a TTL): 0 or less would turn it off, or
 * make it fail everything.
 */
export const positiveDuration = (unit: "milliseconds" | "seconds", fallback: number) => {
  const message = `must be a whole number of ${unit} above 0`;
  return z.coerce.number().int(message).positive(message).default(fallback);
};

/** How long a graceful shutdown may drain in-flight requests before closing them. */
export const shutdownTimeoutMs = positiveDuration("milliseconds", 10_000);

/**
 * How long a replica keeps serving after SIGTERM, without keep-alive, before it closes
 * its listener: longer than the proxy's upstream keepalive_timeout (production); 0, the
 * default, closes it at once.
 */
export const shutdownDelayMs = z.coerce.number().int().min(0).default(0);
