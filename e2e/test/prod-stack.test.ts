import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { artifactPath, launchChromium } from "./support/browser.ts";
import { ComposeProject, waitForBothBackendReplicas } from "./support/compose.ts";

const run = promisify(execFile);

// The production stack exactly as README's "Deploy to production" runs it, from a
// copy of the repository holding a freshly generated secret.
const stack = new ComposeProject({
  files: ["docker-compose.yml", "docker-compose.prod.yml"],
  copyRepo: true,
});
const password = randomBytes(24).toString("base64url");
let url: string;

beforeAll(async () => {
  await stack.prepare();
  await mkdir(join(stack.directory, "secrets"), { recursive: true });
  await writeFile(join(stack.directory, "secrets/postgres_password.txt"), `${password}\n`, {
    mode: 0o644,
  });
  await stack.up();
  url = await stack.url("frontend", 8080);
});
afterAll(async () => {
  await stack.destroy();
});

const post = async (path: string) =>
  (await fetch(`${url}${path}`, { method: "POST" })).json() as Promise<{ count: number }>;

async function containers(): Promise<{ id: string; service: string }[]> {
  const ids = (await stack.compose(["ps", "--quiet"])).trim().split("\n");
  return Promise.all(
    ids.map(async (id) => {
      const { stdout } = await run("docker", [
        "inspect",
        "--format",
        '{{index .Config.Labels "com.docker.compose.service"}}',
        id,
      ]);
      return { id, service: stdout.trim() };
    }),
  );
}

/** The count PostgreSQL holds, read inside the database container. */
async function postgresCount(): Promise<number> {
  const output = await stack.compose([
    "exec",
    "-T",
    "db",
    "psql",
    "--username=counter",
    "--dbname=counter",
    "--tuples-only",
    "--no-align",
    "--command=SELECT count FROM visit_counts WHERE id = 'visits'",
  ]);
  return Number(output.trim());
}

const dockerExec = async (id: string, command: string[]) =>
  (await run("docker", ["exec", id, ...command])).stdout.trim();

describe("production stack", () => {
  it("serves the page, the data API from both replicas, and the counter", async () => {
    expect(await (await fetch(`${url}/`)).text()).toContain("Fetch Data from Backend");

    await waitForBothBackendReplicas(url);

    const first = await post("/api/visits");
    const second = await post("/api/visits");
    expect(second.count).toBe(first.count + 1);
  });

  it("counts exactly across both counter replicas", async () => {
    const start = (await post("/api/visits")).count;
    const counts = await Promise.all(Array.from({ length: 200 }, () => post("/api/visits")));
    const numbers = counts.map((c) => c.count).sort((a, b) => a - b);
    expect(numbers).toEqual(Array.from({ length: 200 }, (_, i) => start + 1 + i));
  });

  it("runs every container as a non-root user on a read-only root filesystem", async () => {
    const all = await containers();
    expect(all.length).toBe(7);
    for (const { id, service } of all) {
      expect(await dockerExec(id, ["id", "-u"]), service).not.toBe("0");
      await expect(
        run("docker", ["exec", id, "touch", "/written-at-runtime"]),
        service,
      ).rejects.toThrow(/Read-only file system/);
    }
  });

  it("keeps the secret out of container environments and image layers", async () => {
    for (const { id, service } of await containers()) {
      const { stdout } = await run("docker", ["inspect", "--format", "{{json .Config.Env}}", id]);
      expect(stdout, service).not.toContain(password);
      expect(stdout, service).not.toMatch(/POSTGRES_PASSWORD=/);
    }
    const images = (await stack.compose(["config", "--images"])).trim().split("\n");
    for (const image of images.filter((name) => name.endsWith(`:${stack.name}`))) {
      const { stdout } = await run("docker", ["history", "--no-trunc", image]);
      expect(stdout, image).not.toContain(password);
    }
  });

  it("keeps the database and cache unreachable from the frontend, reachable from the counter", async () => {
    const frontend = (await containers()).find((c) => c.service === "frontend");
    const counter = (await containers()).find((c) => c.service === "counter");
    if (!frontend || !counter) throw new Error("frontend or counter container missing");
    for (const target of ["db:5432", "cache:6379"]) {
      await expect(
        run("docker", [
          "exec",
          frontend.id,
          "curl",
          "--silent",
          "--max-time",
          "3",
          `telnet://${target}`,
        ]),
        `frontend -> ${target}`,
      ).rejects.toThrow();
      const probe = `const [h, p] = "${target}".split(":"); require("node:net").connect(+p, h).on("connect", () => process.exit(0)).on("error", () => process.exit(1))`;
      await expect(
        run("docker", ["exec", counter.id, "node", "-e", probe]),
        `counter -> ${target}`,
      ).resolves.toBeDefined();
    }
  });

  it("never repeats a number after the cache is stopped, restarted, and the counter restarted", async () => {
    // Reproduces a report against the earlier design (which counted in Redis): there the
    // count went back to the cache's old value and the last five visits repeated numbers.
    const base = (await post("/api/visits")).count - 1;
    for (let i = 2; i <= 20; i++) await post("/api/visits");
    await stack.compose(["stop", "cache"]);
    const whileStopped: number[] = [];
    for (let i = 0; i < 10; i++) whileStopped.push((await post("/api/visits")).count);
    expect(whileStopped).toEqual(Array.from({ length: 10 }, (_, i) => base + 21 + i));

    await stack.compose(["start", "cache"]);
    await new Promise((resolve) => setTimeout(resolve, 6_000));
    expect(await (await fetch(`${url}/api/visits`)).json()).toEqual({ count: base + 30 });

    await stack.compose(["restart", "counter"]);
    await new Promise((resolve) => setTimeout(resolve, 6_000));
    const afterRestart: number[] = [];
    for (let i = 0; i < 5; i++) afterRestart.push((await post("/api/visits")).count);
    expect(afterRestart).toEqual([31, 32, 33, 34, 35].map((n) => base + n));
    expect(await postgresCount()).toBe(base + 35);
  });

  it("keeps serving when a backend replica dies", async () => {
    const backend = (await containers()).find((c) => c.service === "backend");
    if (!backend) throw new Error("no backend container");
    await run("docker", ["kill", backend.id]);
    for (let i = 0; i < 10; i++) {
      const res = await fetch(`${url}/api/data`);
      expect(res.status).toBe(200);
    }
  });

  it("works in a browser: data button, visit count, no CSP violation or console error", async () => {
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const problems: string[] = [];
      page.on("console", (message) => {
        if (message.type() === "error" || message.type() === "warning")
          problems.push(message.text());
      });
      page.on("pageerror", (error) => problems.push(error.message));

      await page.goto(url);
      const visits = page.getByTestId("visits");
      await expect.poll(() => visits.textContent()).toMatch(/visited \d+ times/);
      const firstCount = Number((await visits.textContent())?.match(/\d+/)?.[0]);

      await page.getByRole("button", { name: "Fetch Data from Backend" }).click();
      await expect
        .poll(() => page.getByTestId("data-message").textContent())
        .toBe("Hello from Backend API managed by Docker Compose!");
      expect(await page.getByTestId("data-host").textContent()).toMatch(/\S+/);
      await page.screenshot({ path: await artifactPath("prod-page.png"), fullPage: true });

      await page.reload();
      await expect
        .poll(async () => Number((await visits.textContent())?.match(/\d+/)?.[0]))
        .toBeGreaterThan(firstCount);
      expect(problems).toEqual([]);
    } finally {
      await browser.close();
    }
  });

  it("keeps the count over down/up and starts over after down -v", async () => {
    const before = (await post("/api/visits")).count;
    await stack.compose(["down", "--timeout", "10"]);
    await stack.up();
    url = await stack.url("frontend", 8080);
    expect((await post("/api/visits")).count).toBe(before + 1);

    await stack.compose(["down", "--volumes", "--timeout", "10"]);
    await stack.up();
    url = await stack.url("frontend", 8080);
    expect((await post("/api/visits")).count).toBe(1);
  });
});
