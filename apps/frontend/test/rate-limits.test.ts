// RATE_LIMIT: the per-address limits on visits and on the rest of the API. Without a
// working Docker these tests fail rather than skip.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeCreated } from "./support/docker.ts";
import { counter } from "./support/fixture.ts";
import { CSP, fetchText, sleep, startFrontend } from "./support/frontend.ts";

afterAll(removeCreated);

describe("frontend container rate limits", () => {
  let limited: string;
  let unlimited: string;

  /** `count` requests at once; the answers in order. */
  function burst(count: number, url: (i: number) => string, init?: RequestInit) {
    return Promise.all(Array.from({ length: count }, (_, i) => fetchText(url(i), init)));
  }

  beforeAll(async () => {
    [{ url: limited }, { url: unlimited }] = await Promise.all([
      startFrontend("limited"), // RATE_LIMIT=on, the image's default
      startFrontend("unlimited", { env: { RATE_LIMIT: "off" } }),
    ]);
  });

  it("answers visits over 5/s (bursts of 10) with a JSON 429 and Retry-After", async () => {
    const answers = await burst(30, (i) => `${limited}/api/visits?burst=${i}`, {
      method: "POST",
    });
    const ok = answers.filter((a) => a.res.status === 200);
    const refused = answers.filter((a) => a.res.status === 429);
    expect(ok.length + refused.length).toBe(30);
    // The burst of 10 on top of the first request always gets through.
    expect(ok.length).toBeGreaterThanOrEqual(11);
    expect(refused.length).toBeGreaterThan(0);
    for (const { res, body } of refused) {
      expect(res.headers.get("content-type")).toBe("application/json");
      expect(JSON.parse(body)).toEqual({ error: expect.any(String) });
      expect(res.headers.get("retry-after")).toBe("1");
      expect(res.headers.get("content-security-policy")).toBe(CSP);
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(res.headers.get("referrer-policy")).toBe("no-referrer");
      expect(res.headers.get("x-frame-options")).toBe("DENY");
      expect(res.headers.get("x-request-id")).toMatch(/^[0-9a-f]{32}$/);
    }
    // Refused visits never reached the counter.
    const counted = (await counter.received()).filter((r) => r.url.startsWith("/visits?burst="));
    expect(counted).toHaveLength(ok.length);
  });

  it("never limits a client sending one visit every 250 ms", async () => {
    // Let the bucket the previous burst filled drain (10 excess at 5/s).
    await sleep(2_500);
    const started = Date.now();
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) {
      await sleep(started + i * 250 - Date.now());
      const res = await fetch(`${limited}/api/visits?paced=${i}`, { method: "POST" });
      statuses.push(res.status);
      await res.body?.cancel();
    }
    expect(statuses).toEqual(Array(10).fill(200));
  });

  it("limits the rest of the API more loosely: 20/s, bursts of 40", async () => {
    const answers = await burst(60, (i) => `${limited}/api/data?burst=${i}`);
    const ok = answers.filter((a) => a.res.status === 200).length;
    const refused = answers.filter((a) => a.res.status === 429);
    expect(ok + refused.length).toBe(60);
    expect(ok).toBeGreaterThanOrEqual(41);
    expect(refused.length).toBeGreaterThan(0);
    expect(JSON.parse(refused[0]?.body ?? "")).toEqual({ error: expect.any(String) });
  });

  it("limits nothing with RATE_LIMIT=off", async () => {
    const answers = await burst(60, (i) => `${unlimited}/api/visits?unlimited=${i}`, {
      method: "POST",
    });
    expect(answers.map((a) => a.res.status)).toEqual(Array(60).fill(200));
    const counted = (await counter.received()).filter((r) =>
      r.url.startsWith("/visits?unlimited="),
    );
    expect(counted).toHaveLength(60);
  });
});
