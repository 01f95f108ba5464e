import { type DestinationStream, type Logger, pino } from "pino";

export type { Logger };

/**
 * JSON logs on stdout (one object per line), the format `docker compose logs` and log
 * shippers expect. `destination` replaces stdout (tests read the lines).
 */
export function createLogger(options: {
  name: string;
  level: string;
  destination?: DestinationStream;
}): Logger {
  const settings = {
    name: options.name,
    level: options.level,
    // Credentials must never reach the logs, even if a request carries them.
    redact: ["req.headers.authorization", "req.headers.cookie"],
  };
  return options.destination ? pino(settings, options.destination) : pino(settings);
}
