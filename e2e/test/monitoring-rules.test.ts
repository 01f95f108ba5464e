// Prometheus' configuration and rules (infra/monitoring), checked by promtool from the
// Prometheus image itself: the config and rule files parse, and every recording rule
// and alert passes its unit tests (infra/monitoring/tests). Without Docker these fail.
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "./support/compose.ts";

const run = promisify(execFile);
const PROMETHEUS_IMAGE = process.env.PROMETHEUS_IMAGE ?? "prom/prometheus:v3.5.3";
const MONITORING = join(REPO_ROOT, "infra/monitoring");

/** promtool in a throwaway container, with the files where Prometheus' container has them. */
async function promtool(...args: string[]): Promise<string> {
  const { stdout, stderr } = await run(
    "docker",
    [
      ...["run", "--rm", "--network", "none", "--entrypoint", "promtool"],
      ...["-v", `${MONITORING}/prometheus.yml:/etc/prometheus/prometheus.yml:ro`],
      ...["-v", `${MONITORING}/rules:/etc/prometheus/rules:ro`],
      ...["-v", `${MONITORING}/tests:/etc/prometheus/tests:ro`],
      ...["-w", "/etc/prometheus/tests", PROMETHEUS_IMAGE],
      ...args,
    ],
    { timeout: 120_000 },
  );
  return stdout + stderr;
}

describe("Prometheus configuration", () => {
  it("is valid, rule files included", async () => {
    const output = await promtool("check", "config", "/etc/prometheus/prometheus.yml");
    expect(output).toMatch(/SUCCESS: \/etc\/prometheus\/prometheus\.yml is valid/);
    // Both rule files found through the glob, and valid.
    expect(output).toMatch(/SUCCESS: \d+ rules found[\s\S]*SUCCESS: \d+ rules found/);
  });

  it("passes every recording rule's and alert's unit test", async () => {
    const output = await promtool("test", "rules", "recording.test.yml", "alerts.test.yml");
    expect(output.match(/SUCCESS/g)).toHaveLength(2);
  });
});
