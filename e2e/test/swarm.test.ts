import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ComposeProject, eventually, waitForBothBackendReplicas } from "./support/compose.ts";

const run = promisify(execFile);

// The production files deployed to a single-node Docker Swarm with
// infra/swarm/deploy.sh, as README's "Docker Swarm" section does it.
const stack = new ComposeProject({
  files: ["docker-compose.yml", "docker-compose.prod.yml"],
  copyRepo: true,
});
const stackName = stack.name;
let url: string;
let swarmStartedHere = false;

async function freePort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

beforeAll(async () => {
  const { stdout } = await run("docker", ["info", "--format", "{{.Swarm.LocalNodeState}}"]);
  if (stdout.trim() === "inactive") {
    await run("docker", ["swarm", "init", "--advertise-addr", "127.0.0.1"]);
    swarmStartedHere = true;
  }
  await stack.prepare();
  await mkdir(join(stack.directory, "secrets"), { recursive: true });
  const password = randomBytes(24).toString("base64url");
  await writeFile(join(stack.directory, "secrets/postgres_password.txt"), `${password}\n`, {
    mode: 0o644,
  });

  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  const env = { ...process.env, FRONTEND_PORT: String(port), IMAGE_TAG: stack.name };
  await stack.compose(["build"]);
  await run("bash", ["infra/swarm/deploy.sh", stackName], {
    cwd: stack.directory,
    env,
    timeout: 300_000,
  });
});

afterAll(async () => {
  await run("docker", ["stack", "rm", stackName]).catch(() => {});
  // Named volumes outlive `stack rm`, and can only go once the tasks are gone.
  await eventually(async () => {
    const { stdout } = await run("docker", [
      "ps",
      "-aq",
      "--filter",
      `label=com.docker.stack.namespace=${stackName}`,
    ]);
    expect(stdout.trim()).toBe("");
  }, 60_000).catch(() => {});
  await run("docker", ["volume", "rm", `${stackName}_db-data`]).catch(() => {});
  if (swarmStartedHere) await run("docker", ["swarm", "leave", "--force"]).catch(() => {});
  await stack.destroy();
});

describe("production stack on Docker Swarm", () => {
  it("runs every service with its replicas", async () => {
    const { stdout } = await run("docker", [
      "stack",
      "services",
      stackName,
      "--format",
      "{{.Name}} {{.Replicas}}",
    ]);
    const replicas = Object.fromEntries(
      stdout
        .trim()
        .split("\n")
        .map((line) => line.split(" ")),
    );
    expect(replicas).toEqual({
      [`${stackName}_backend`]: "2/2",
      [`${stackName}_cache`]: "1/1",
      [`${stackName}_counter`]: "2/2",
      [`${stackName}_db`]: "1/1",
      [`${stackName}_frontend`]: "1/1",
    });
  });

  it("serves the page and the data API from both backend replicas", async () => {
    const page = await eventually(async () => {
      const res = await fetch(`${url}/`);
      expect(res.status).toBe(200);
      return res.text();
    }, 30_000);
    expect(page).toContain("Fetch Data from Backend");

    await waitForBothBackendReplicas(url);
  });

  it("counts exactly across both counter replicas", async () => {
    const post = async () =>
      ((await (await fetch(`${url}/api/visits`, { method: "POST" })).json()) as { count: number })
        .count;
    const start = await eventually(post, 30_000);
    const counts = (await Promise.all(Array.from({ length: 100 }, post))).sort((a, b) => a - b);
    expect(counts).toEqual(Array.from({ length: 100 }, (_, i) => start + 1 + i));
  });
});
