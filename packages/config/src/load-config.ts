import { readFileSync } from "node:fs";
import type { z } from "zod";

type Env = Record<string, string | undefined>;

// Values of these variables never appear in error messages (or logs).
const SECRET_NAME = /PASSWORD|SECRET|TOKEN|(^|_)KEY$/i;

function describeValue(name: string, value: string | undefined): string {
  if (value === undefined) return "it is not set";
  return SECRET_NAME.test(name) ? "value hidden" : `got ${JSON.stringify(value)}`;
}

/** Thrown when the environment does not satisfy a schema; the message lists every problem. */
export class ConfigError extends Error {
  readonly problems: string[];

  constructor(appName: string, problems: string[]) {
    super(
      `Invalid configuration for ${appName} (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n` +
        problems.map((problem) => `  - ${problem}`).join("\n"),
    );
    this.name = "ConfigError";
    this.problems = problems;
  }
}

/**
 * Reads `schema`'s variables from `env`. Every variable may instead be given as
 * `NAME_FILE`, a path whose content is the value: this is how Docker/Compose
 * secrets (`/run/secrets/…`) reach the app without appearing in `docker inspect`.
 * All problems are collected and thrown together, so one failed start tells the
 * operator everything that needs fixing.
 */
export function loadConfig<Schema extends z.ZodObject>(
  appName: string,
  schema: Schema,
  env: Env = process.env,
): z.infer<Schema> {
  const problems: string[] = [];
  const values: Env = {};
  // Names whose problem is already reported (a bad NAME_FILE): not reported again as unset.
  const reported = new Set<string>();

  for (const name of Object.keys(schema.shape)) {
    const filePath = env[`${name}_FILE`];
    if (filePath === undefined || filePath === "") {
      values[name] = env[name];
      continue;
    }
    if (env[name] !== undefined && env[name] !== "") {
      problems.push(`${name}: set either ${name} or ${name}_FILE, not both`);
      reported.add(name);
      continue;
    }
    try {
      // Secret files usually end with a newline that is not part of the value.
      values[name] = readFileSync(filePath, "utf8").replace(/\r?\n$/, "");
    } catch (error) {
      problems.push(`${name}_FILE: cannot read ${filePath} (${(error as Error).message})`);
      reported.add(name);
    }
  }

  const result = schema.safeParse(values);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const name = issue.path.join(".") || "(root)";
      if (reported.has(name)) continue;
      problems.push(`${name}: ${issue.message} (${describeValue(name, values[name])})`);
    }
  }

  if (problems.length > 0 || !result.success) throw new ConfigError(appName, problems);
  return result.data;
}

/**
 * For an app's entry point: the configuration, or the ConfigError's message on
 * stderr and exit code 1 (no stack trace: the message says everything to fix).
 */
export function loadConfigOrExit<Config>(load: () => Config): Config {
  try {
    return load();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    process.exit(1);
  }
}
