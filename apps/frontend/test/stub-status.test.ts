// Nginx's stub_status listener (nginx/templates/stub-status.conf.template), which the
// nginx-prometheus-exporter scrapes: it answers on its own port inside the container
// network, and the site's port does not serve it. Without Docker these tests fail.
import { execFile as execFileCallback } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const execFile = promisify(execFileCallback);
const NGINX_IMAGE = process.env.NGINX_IMAGE || "nginx:1.30";
const CONTEXT = fileURLToPath(new URL("..", import.meta.url));
const RUN_ID = `${process.pid}-${Date.now().toString(36)}`;
const IMAGE = `app-frontend-stub-status-test:${RUN_ID}`;
let container = "";

async function docker(...args: string[]): Promise<string> {
  const { stdout } = await execFile("docker", args, { timeout: 180_000 });
  return stdout;
}

/** curl inside the container (the nginx image has it): status code and body. */
async function curlInside(url: string): Promise<{ status: number; body: string }> {
  const out = await docker("exec", container, "curl", "-sS", "-w", "\n%{http_code}", url);
  const lines = out.split("\n");
  return { status: Number(lines.pop()), body: lines.join("\n") };
}

beforeAll(async () => {
  await docker(
    "build",
    "--quiet",
    "--build-arg",
    `NGINX_IMAGE=${NGINX_IMAGE}`,
    "-t",
    IMAGE,
    CONTEXT,
  );
  // Production's settings: read-only root, non-root user, its tmpfs mounts.
  container = (
    await docker(
      ...["run", "-d", "--read-only", "--user", "101:101", "--cap-drop", "ALL"],
      ...["--tmpfs", "/tmp", "--tmpfs", "/var/cache/nginx:uid=101,gid=101"],
      ...["--tmpfs", "/etc/nginx/conf.d:uid=101,gid=101"],
      IMAGE,
    )
  ).trim();
  for (let tries = 0; ; tries++) {
    try {
      await docker("exec", container, "curl", "-fsS", "http://127.0.0.1:8080/healthz");
      break;
    } catch (error) {
      if (tries > 100) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}, 300_000);

afterAll(async () => {
  if (container) await docker("rm", "-f", container).catch(() => {});
  await docker("image", "rm", "-f", IMAGE).catch(() => {});
});

describe("stub_status", () => {
  it("answers on its own listener, port 8081", async () => {
    const { status, body } = await curlInside("http://127.0.0.1:8081/stub_status");
    expect(status).toBe(200);
    expect(body).toMatch(/^Active connections: \d+/);
    expect(body).toMatch(/server accepts handled requests\n \d+ \d+ \d+/);
  });

  it("is nothing else on that listener, and nothing on the site's port", async () => {
    expect((await curlInside("http://127.0.0.1:8081/")).status).toBe(404);
    expect((await curlInside("http://127.0.0.1:8080/stub_status")).status).toBe(404);
  });
});
