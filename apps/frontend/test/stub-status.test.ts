// Nginx's stub_status listener (nginx/templates/stub-status.conf.template), which the
// nginx-prometheus-exporter scrapes: it answers on its own port (8081), which no compose
// file publishes, and the site's port has no /stub_status. The image runs hardened, as
// in production. Without a working Docker these tests fail rather than skip.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker, removeCreated } from "./support/docker.ts";
import { HARDENED, startFrontend } from "./support/frontend.ts";

afterAll(removeCreated);

describe("stub_status", () => {
  let container: string;
  beforeAll(async () => {
    ({ container } = await startFrontend("stub-status", { extraArgs: HARDENED }));
  });

  /** curl inside the container (the nginx image has it): status code and body. */
  async function curlInside(url: string): Promise<{ status: number; body: string }> {
    const { stdout } = await docker("exec", container, "curl", "-sS", "-w", "\n%{http_code}", url);
    const lines = stdout.split("\n");
    return { status: Number(lines.pop()), body: lines.join("\n") };
  }

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
