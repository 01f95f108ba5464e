// TRUSTED_PROXIES: whose X-Forwarded-For and -Proto the frontend believes. Without a
// working Docker these tests fail rather than skip.
import type { IncomingHttpHeaders } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker, ipOf, removeCreated } from "./support/docker.ts";
import { backend, frontend, network } from "./support/fixture.ts";
import { startFrontend } from "./support/frontend.ts";

afterAll(removeCreated);

describe("frontend container behind a trusted proxy (TRUSTED_PROXIES)", () => {
  const FORWARDED = { "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https" };
  let untrusting: string;
  let trusting: string;
  let trustingContainer: string;
  /** The address the test's requests come from, as the containers see it. */
  let peer: string;

  /** The headers the backend got for GET /api/data?<tag> carrying FORWARDED. */
  async function forwardedHeaders(url: string, tag: string): Promise<IncomingHttpHeaders> {
    const res = await fetch(`${url}/api/data?${tag}`, { headers: FORWARDED });
    expect(res.status).toBe(200);
    return (await backend.last(`/data?${tag}`))?.headers ?? {};
  }

  beforeAll(async () => {
    untrusting = frontend.url;
    // nginx tells the backend the peer it saw (X-Real-IP).
    await fetch(`${untrusting}/api/data?peer=1`);
    peer = String((await backend.last("/data?peer=1"))?.headers["x-real-ip"]);
    expect(peer).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    ({ url: trusting, container: trustingContainer } = await startFrontend("trusting", {
      env: { TRUSTED_PROXIES: peer },
    }));
  });

  it("ignores X-Forwarded-For and -Proto when no proxy is trusted", async () => {
    const headers = await forwardedHeaders(untrusting, "trusted=none");
    expect(headers["x-real-ip"]).toBe(peer);
    expect(headers["x-forwarded-proto"]).toBe("http");
    expect(headers["x-forwarded-for"]).toBe(`203.0.113.9, ${peer}`);
  });

  it("takes the client address and scheme from a trusted proxy", async () => {
    const headers = await forwardedHeaders(trusting, "trusted=peer");
    expect(headers["x-real-ip"]).toBe("203.0.113.9");
    expect(headers["x-forwarded-proto"]).toBe("https");
  });

  it("still ignores them from any other address", async () => {
    // From the fake backend's container: an address on the network that is not trusted.
    const target = `http://${await ipOf(trustingContainer, network)}:8080/api/data?trusted=other`;
    await docker(
      ...["exec", backend.container, "node", "-e"],
      `fetch(${JSON.stringify(target)}, { headers: ${JSON.stringify(FORWARDED)} })
        .then((res) => process.exit(res.status === 200 ? 0 : 1))`,
    );
    const headers = (await backend.last("/data?trusted=other"))?.headers ?? {};
    expect(headers["x-real-ip"]).toBe(await ipOf(backend.container, network));
    expect(headers["x-forwarded-proto"]).toBe("http");
  });
});
