import { execFile, execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { eventually } from "@app/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitForBothBackendReplicas } from "../support/compose.ts";
import { TrustingClient } from "../support/https.ts";
import { prepareProductionSecrets, productionStack } from "../support/production.ts";

const run = promisify(execFile);

// The production files deployed to a single-node Docker Swarm with
// infra/swarm/deploy.sh, as docs/SWARM.md does it, with the secrets
// infra/init-secrets.sh makes (docs/PRODUCTION.md): passwords and a self-signed
// certificate for localhost, which the tests trust as a browser would after the warning.
// The frontend publishes its ports in host mode on fixed free ports: HTTPS, and HTTP that
// redirects there (PUBLIC_HTTPS_PORT must name the real port).
const { stack, url, httpPort } = await productionStack();
const stackName = stack.name;
let client: TrustingClient | undefined;
let swarmStartedHere = false;

// Opt-in: the test makes this machine's Docker daemon a swarm manager for its length
// (`docker swarm init`, only if the daemon is not in a swarm yet, and `docker swarm
// leave` afterwards). E2E_SWARM=1 alone turns it on, never CI=true, which other tools
// set too; CI sets it (.ci/run, the GitHub workflow), and the test task's hash covers it
// (turbo.json), so a cached run never replays a pass without it.
const enabled = process.env.E2E_SWARM === "1";

describe.runIf(enabled)("production stack on Docker Swarm", () => {
  beforeAll(async () => {
    const { stdout } = await run("docker", ["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    if (stdout.trim() === "inactive") {
      await run("docker", ["swarm", "init", "--advertise-addr", "127.0.0.1"]);
      swarmStartedHere = true;
      // Interrupted (Ctrl-C), the run still leaves the swarm it made.
      for (const signal of ["SIGINT", "SIGTERM"] as const) {
        process.once(signal, () => {
          execFileSync("docker", ["swarm", "leave", "--force"], { stdio: "ignore" });
          process.exit(130);
        });
      }
    }
    await prepareProductionSecrets(stack);
    client = new TrustingClient(
      await readFile(join(stack.directory, "secrets/tls_certificate.pem"), "utf8"),
    );

    await stack.compose(["build"]);
    await run("bash", ["infra/swarm/deploy.sh", stackName], {
      cwd: stack.directory,
      env: stack.commandEnvironment(),
      timeout: 300_000,
    });
  });

  afterAll(async () => {
    await client?.close();
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

  const https = (path: string, init?: Parameters<TrustingClient["fetch"]>[1]) => {
    if (!client) throw new Error("not set up");
    return client.fetch(`${url}${path}`, init);
  };

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
        // "NAME 2/2", or "NAME 0/1 (1/1 completed)" for a job: split at the first space.
        .map((line) => [line.slice(0, line.indexOf(" ")), line.slice(line.indexOf(" ") + 1)]),
    );
    expect(replicas).toEqual({
      [`${stackName}_backend`]: "2/2",
      [`${stackName}_cache`]: "1/1",
      [`${stackName}_counter`]: "2/2",
      [`${stackName}_db`]: "1/1",
      // A job (the roles, infra/postgres): done once, nothing left running.
      [`${stackName}_db-setup`]: expect.stringMatching(/\(1\/1 completed\)$/),
      [`${stackName}_frontend`]: "1/1",
      // A job too: the counter's migrations (apps/counter/migrations), once.
      [`${stackName}_migrate`]: expect.stringMatching(/\(1\/1 completed\)$/),
    });
  });

  it("serves the page over HTTPS and the data API from both backend replicas", async () => {
    const page = await eventually(async () => {
      const res = await https("/");
      expect(res.status).toBe(200);
      return res.text();
    }, 30_000);
    expect(page).toContain("Fetch Data from Backend");

    await waitForBothBackendReplicas(url, (target) => https(target.slice(url.length)));
  });

  it("redirects plain HTTP to HTTPS", async () => {
    if (!client) throw new Error("not set up");
    const res = await client.fetch(`http://localhost:${httpPort}/api/data?x=1`, {
      redirect: "manual",
    });
    await res.text();
    expect(res.status).toBe(308);
    expect(res.headers.get("location")).toBe(`${url}/api/data?x=1`);
  });

  it("counts exactly across both counter replicas, with the cache behind its password", async () => {
    const post = async () => {
      const res = await https("/api/visits", { method: "POST" });
      const body = (await res.json()) as { count: number };
      expect(res.status).toBe(200);
      return body.count;
    };
    const start = await eventually(post, 30_000);
    const counts = (await Promise.all(Array.from({ length: 100 }, post))).sort((a, b) => a - b);
    expect(counts).toEqual(Array.from({ length: 100 }, (_, i) => start + 1 + i));

    // The cache took the password from its secret: without it, redis-cli is refused.
    const { stdout: ids } = await run("docker", [
      "ps",
      "-q",
      "--filter",
      `label=com.docker.swarm.service.name=${stackName}_cache`,
    ]);
    const cache = ids.trim().split("\n")[0] ?? "";
    const ping = (auth: boolean) =>
      run("docker", [
        "exec",
        cache,
        "sh",
        "-c",
        `${auth ? 'REDISCLI_AUTH="$(cat /run/secrets/redis_password)" ' : ""}redis-cli ping`,
      ]).then(({ stdout }) => stdout.trim());
    expect(await ping(true)).toBe("PONG");
    expect(await ping(false)).toMatch(/NOAUTH/);
  });
});
