import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { eventually } from "@app/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { artifactPath, launchChromium } from "../support/browser.ts";
import { ComposeProject, REPO_ROOT } from "../support/compose.ts";
import { normalize, parseQuickStart } from "../support/readme.ts";

// `docker compose up --build` exactly as a developer runs it (base + the
// auto-loaded override), from a copy of the repository so hot reload can be
// tested by editing files.
const stack = new ComposeProject({
  files: ["docker-compose.yml", "docker-compose.override.yml"],
  copyRepo: true,
});
let url: string;

beforeAll(async () => {
  await stack.prepare();
  await stack.up();
  url = await stack.url("frontend", 8080);
});
afterAll(async () => {
  await stack.destroy();
});

async function getJson(path: string, init?: RequestInit) {
  const res = await fetch(`${url}${path}`, init);
  // biome-ignore lint/suspicious/noExplicitAny: assertions below check the shape.
  return { res, body: (await res.json()) as any };
}

// First in this file: the README's counts start from a fresh stack, before any other
// test here has counted a visit.
describe("the README's quick start", () => {
  it("prints what the README shows: the page's own visit first, then the API examples", async () => {
    const readme = parseQuickStart(await readFile(join(REPO_ROOT, "README.md"), "utf8"));
    // The stack is up already (beforeAll); the README's own command must agree.
    expect(readme.setup).toContain("docker compose up --build --wait");
    for (const command of readme.setup) await stack.shell(command);

    // The page, as the reader opens it: it counts its own visit as it loads.
    const browser = await launchChromium();
    try {
      // The size of the README's screenshot (docs/page.png), which this one can replace.
      const page = await browser.newPage({ viewport: { width: 900, height: 620 } });
      await page.goto(url);
      await expect.poll(() => page.getByTestId("visits").textContent()).toBe(readme.pageText);
      await page.getByRole("button", { name: "Fetch Data from Backend" }).click();
      await expect
        .poll(() => page.getByTestId("data-message").textContent())
        .toBe("Hello from Backend API managed by Docker Compose!");
      await page.screenshot({ path: await artifactPath("readme-page.png") });
    } finally {
      await browser.close();
    }

    expect(readme.examples.map((example) => example.command.split(" ")[0])).toEqual([
      "docker",
      "curl",
      "curl",
      "curl",
      "curl",
    ]);
    for (const { command, output } of readme.examples) {
      // The reader's localhost:8080 is this stack's random port.
      const line = command.replaceAll("localhost:8080", new URL(url).host);
      const check = async () =>
        expect(normalize(await stack.shell(line)), command).toBe(normalize(output));
      // The count reaches Redis right after the visit's answer: a read may lag a moment,
      // so reads are retried. A visit is not: repeated, it would count twice.
      if (command.includes("-X POST")) await check();
      else await eventually(check, 5_000);
    }
  }, 300_000);
});

describe("development stack through Nginx", () => {
  it("serves the page", async () => {
    const res = await fetch(`${url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/text\/html/);
    expect(res.headers.get("content-security-policy")).toContain("default-src 'self'");
    const html = await res.text();
    expect(html).toContain("Fetch Data from Backend");
    expect(html).not.toMatch(/<script>(?!<\/script>)/);
  });

  it("GET /api/data is the backend's JSON", async () => {
    const { res, body } = await getJson("/api/data");
    expect(res.status).toBe(200);
    expect(body).toEqual({
      message: "Hello from Backend API managed by Docker Compose!",
      timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      servedByHost: expect.any(String),
    });
  });

  it("GET /api/nope is the backend's JSON 404", async () => {
    const { res, body } = await getJson("/api/nope");
    expect(res.status).toBe(404);
    expect(body).toEqual({ error: "Not found: GET /nope" });
  });

  it("POST /api/visits counts, GET /api/visits reads from the cache (README's example)", async () => {
    const first = await getJson("/api/visits", { method: "POST" });
    const second = await getJson("/api/visits", { method: "POST" });
    expect(second.body.count).toBe(first.body.count + 1);
    // The count reaches Redis right after the visit's answer: a read may lag a moment.
    await eventually(async () => {
      const read = await getJson("/api/visits");
      expect(read.body).toEqual({ count: second.body.count });
      expect(read.res.headers.get("x-cache")).toBe("hit");
    });
  });

  it("publishes only loopback ports besides the frontend", async () => {
    const ps = JSON.parse(
      `[${(await stack.compose(["ps", "--format", "json"])).trim().split("\n").join(",")}]`,
    );
    const published = ps.flatMap(
      (service: { Service: string; Publishers: { URL: string; PublishedPort: number }[] }) =>
        (service.Publishers ?? [])
          .filter((p) => p.PublishedPort > 0)
          .map((p) => ({ service: service.Service, url: p.URL })),
    );
    // The services that publish anything: the frontend (base file) and the two APIs with
    // their inspectors (the override). The loop below then has ports to look at.
    const services = [...new Set(published.map((p: { service: string }) => p.service))].sort();
    expect(services).toEqual(["backend", "counter", "frontend"]);
    const others = published.filter((p: { service: string }) => p.service !== "frontend");
    expect(others).toHaveLength(4);
    for (const { service, url: address } of others) expect(address, service).toBe("127.0.0.1");
  });

  it("hot-reloads backend TypeScript and frontend files without a rebuild", async () => {
    const source = join(stack.directory, "apps/backend/src/app.ts");
    const original = await readFile(source, "utf8");
    await writeFile(source, original.replace("managed by Docker Compose!", "hot reloaded!"));
    const started = Date.now();
    await eventually(async () => {
      const { body } = await getJson("/api/data");
      expect(body.message).toBe("Hello from Backend API hot reloaded!");
    }, 15_000);
    console.info(`backend reload served after ${Date.now() - started} ms`);
    await writeFile(source, original);

    const page = join(stack.directory, "apps/frontend/public/index.html");
    await writeFile(
      page,
      (await readFile(page, "utf8")).replace("</body>", "<p>edited</p></body>"),
    );
    await eventually(async () =>
      expect(await (await fetch(`${url}/`)).text()).toContain("<p>edited</p>"),
    );
  });

  it("mounts no anonymous volume, which every `down` would leave behind", async () => {
    expect(await stack.anonymousVolumes()).toEqual([]);
  });

  it("the count survives down/up; down -v starts over", async () => {
    const before = (await getJson("/api/visits", { method: "POST" })).body.count;
    await stack.compose(["down", "--timeout", "10"]);
    await stack.up();
    url = await stack.url("frontend", 8080);
    const after = await getJson("/api/visits", { method: "POST" });
    expect(after.body.count).toBe(before + 1);

    await stack.compose(["down", "--volumes", "--timeout", "10"]);
    await stack.up();
    url = await stack.url("frontend", 8080);
    expect((await getJson("/api/visits", { method: "POST" })).body).toEqual({ count: 1 });
  });

  it("answers a JSON 502 when the backend is stopped", async () => {
    await stack.compose(["stop", "backend"]);
    // Nginx may hold the stopped container's address for up to 2 s (resolver valid=2s);
    // a request in that window is a JSON 504. After it, the name no longer resolves.
    const { res, body } = await eventually(async () => {
      const answer = await getJson("/api/data");
      expect(answer.res.status).toBe(502);
      return answer;
    }, 10_000);
    expect(res.headers.get("content-type")).toMatch(/application\/json/);
    expect(body).toEqual({ error: expect.any(String) });
    await stack.compose(["start", "backend"]);
  });
});
