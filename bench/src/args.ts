import { type ParseArgsOptionsConfig, parseArgs } from "node:util";

/**
 * Parses `--flag value` options. `pnpm bench -- --only load` passes a literal "--"
 * through; it is dropped. Unknown flags, or --help, print the usage and exit.
 */
export function flags(
  usage: string,
  options: ParseArgsOptionsConfig,
): Record<string, string | boolean | undefined> {
  const args = process.argv.slice(2).filter((arg) => arg !== "--");
  try {
    const { values } = parseArgs({
      args,
      options: { ...options, help: { type: "boolean", short: "h" } },
      strict: true,
    });
    if (values.help) {
      console.log(usage);
      process.exit(0);
    }
    return values as Record<string, string | boolean | undefined>;
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : error}\n\n${usage}`);
    process.exit(2);
  }
}

/** A positive number from a flag, or exit with the usage. */
export function positive(name: string, value: unknown, usage: string): number {
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0) {
    console.error(`--${name} must be a positive number, got ${String(value)}\n\n${usage}`);
    process.exit(2);
  }
  return number;
}

/** A whole number ≥ 0 from a flag, or exit with the usage. */
export function wholeNumber(name: string, value: unknown, usage: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 0) {
    console.error(`--${name} must be a whole number ≥ 0, got ${String(value)}\n\n${usage}`);
    process.exit(2);
  }
  return number;
}
