import { execFile } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ComposeProject, REPO_ROOT } from "./support/compose.ts";

// No swarm needed: what infra/swarm/to-stack.mjs makes of the production compose model
// (the Swarm deploy itself: stacks/swarm.test.ts, opt-in).

interface Service {
  healthcheck?: { test?: string[] };
}

/** The stack file deploy.sh would deploy: the rendered compose files through to-stack.mjs. */
async function stackFile(config: string): Promise<{ services: Record<string, Service> }> {
  const converted = await new Promise<string>((resolve, reject) => {
    const child = execFile(
      "node",
      [join(REPO_ROOT, "infra/swarm/to-stack.mjs")],
      (error, stdout) => (error ? reject(error) : resolve(stdout)),
    );
    child.stdin?.end(config);
  });
  return JSON.parse(converted);
}

describe("the stack file's healthchecks (to-stack.mjs)", () => {
  it("ask the admin port's /healthz, which a database outage does not fail, where Compose asks /readyz", async () => {
    const project = new ComposeProject({
      files: ["docker-compose.yml", "docker-compose.prod.yml"],
    });
    const config = await project.compose(["config", "--format", "json"]);
    const compose = JSON.parse(config) as { services: Record<string, Service> };
    const swarm = await stackFile(config);
    for (const name of ["backend", "counter"]) {
      const composeCheck = compose.services[name]?.healthcheck?.test?.join(" ") ?? "";
      const swarmCheck = swarm.services[name]?.healthcheck?.test?.join(" ") ?? "";
      expect(composeCheck, name).toContain("'/readyz'");
      expect(swarmCheck, name).not.toContain("/readyz");
      // The same check otherwise: the liveness path on the admin port, then the app's port.
      expect(swarmCheck, name).toBe(composeCheck.replace("'/readyz'", "'/healthz'"));
    }
  });
});
