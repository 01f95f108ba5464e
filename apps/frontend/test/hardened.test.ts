// The image run as the production override runs it: uid 101, read-only, no capabilities.
// Without a working Docker these tests fail rather than skip.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeCreated } from "./support/docker.ts";
import { BIG, DATA } from "./support/fakes.ts";
import { backend } from "./support/fixture.ts";
import { CSP, HARDENED, startFrontend } from "./support/frontend.ts";

afterAll(removeCreated);

describe("frontend container hardened as in production", () => {
  let url: string;

  beforeAll(async () => {
    ({ url } = await startFrontend("hardened", {
      extraArgs: HARDENED,
    }));
  });

  it("serves the page", async () => {
    const res = await fetch(`${url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-security-policy")).toBe(CSP);
    expect(await res.text()).toContain("Docker Compose visit counter");
  });

  it("proxies the API", async () => {
    const res = await fetch(`${url}/api/data`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual(DATA);
  });

  it("buffers large bodies through its temp directories", async () => {
    // A 1 MB response and a 40 KB request body exceed nginx's memory buffers, so they
    // go through /var/cache/nginx: this fails if the temp paths are not writable.
    const big = await fetch(`${url}/api/big`);
    expect(big.status).toBe(200);
    expect(await big.json()).toEqual(BIG);

    const res = await fetch(`${url}/api/echo`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ filler: "x".repeat(40 * 1024) }),
    });
    expect(res.status).toBe(200);
    expect((await backend.last("/echo"))?.bodyLength).toBeGreaterThan(40 * 1024);
  });
});
