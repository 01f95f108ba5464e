// What the frontend answers when a service is unreachable, stopped, recreated, scaled or
// failing. Without a working Docker these tests fail rather than skip.

import { eventually } from "@app/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNetwork, docker, health, ipOf, removeCreated } from "./support/docker.ts";
import {
  BACKEND_ROUTES,
  COUNTER_ROUTES,
  type Fake,
  startFake,
  startPlaceholder,
} from "./support/fakes.ts";
import { expectQuickJson502, fetchText, sleep, startFrontend } from "./support/frontend.ts";

afterAll(removeCreated);

describe("frontend container with services refusing connections", () => {
  let url: string;
  let container: string;

  beforeAll(async () => {
    // The names resolve (the fakes), but nothing listens on these ports.
    ({ url, container } = await startFrontend("refused", {
      env: { BACKEND_UPSTREAM: "backend:3999", COUNTER_UPSTREAM: "counter:3999" },
    }));
  });

  it("answers /api/data with a JSON 502", async () => {
    await expectQuickJson502(await fetchText(`${url}/api/data`), container);
  });

  it("answers /api/visits with a JSON 502", async () => {
    await expectQuickJson502(await fetchText(`${url}/api/visits`, { method: "POST" }), container);
  });
});

describe("frontend container with no services at all", () => {
  let url: string;
  let container: string;

  beforeAll(async () => {
    // A network where neither "backend" nor "counter" exists; the image's defaults.
    const empty = await createNetwork("empty");
    ({ url, container } = await startFrontend("alone", { network: empty }));
  });

  it("starts, stays healthy and serves the page", async () => {
    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("Docker Compose visit counter");
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });

  it("answers /api/data and /api/visits with a JSON 502", async () => {
    await expectQuickJson502(await fetchText(`${url}/api/data`), container);
    await expectQuickJson502(await fetchText(`${url}/api/visits`, { method: "POST" }), container);
    expect(await health(container)).toEqual({ state: "running", health: "healthy" });
  });
});

describe("frontend container while the backend is stopped, recreated and scaled", () => {
  // A network of its own, so stopping "backend" here disturbs no other test.
  let net: string;
  let url: string;
  let container: string;
  let first: Fake;
  let firstIp: string;

  /** Polls GET /api/data until `done` holds for the names of the fakes seen answering. */
  async function pollUntil(done: (seen: Set<string>) => boolean): Promise<Set<string>> {
    const seen = new Set<string>();
    const deadline = Date.now() + 15_000;
    while (!done(seen)) {
      if (Date.now() > deadline) throw new Error(`gave up; answered by: ${[...seen]}`);
      const { res } = await fetchText(`${url}/api/data`);
      const name = res.headers.get("x-served-by");
      if (res.status === 200 && name) seen.add(name);
      else await sleep(250);
    }
    return seen;
  }

  beforeAll(async () => {
    net = await createNetwork("restart");
    const fake = { network: net, alias: "backend", port: 3001, routes: BACKEND_ROUTES };
    first = await startFake({ ...fake, name: "first" });
    firstIp = await ipOf(first.container, net);
    ({ url, container } = await startFrontend("restart", { network: net }));
  });

  it("proxies to the running backend", async () => {
    const res = await fetch(`${url}/api/data`);
    expect(res.status).toBe(200);
    expect(res.headers.get("x-served-by")).toBe("first");
  });

  it("answers a quick JSON 502 once the backend is stopped", async () => {
    await docker("stop", first.container);
    // nginx may still hold the old address for up to valid=2s; a request in that window
    // tries it and waits for proxy_connect_timeout (a 504 for that try). After it, the
    // stopped container's name no longer resolves, which nginx answers at once: polled
    // for until a request shows it.
    await eventually(
      async () => expectQuickJson502(await fetchText(`${url}/api/data`), container),
      20_000,
    );
    expect(await health(container)).toEqual({ state: "running", health: "healthy" });
  });

  it("picks up a recreated backend at a new address without a restart", async () => {
    // Docker may hand the freed address straight to the next container: take it first,
    // so the new backend surely gets a different one.
    await startPlaceholder("ipholder", net);
    const second = await startFake({
      network: net,
      alias: "backend",
      port: 3001,
      name: "second",
      routes: BACKEND_ROUTES,
    });
    expect(await ipOf(second.container, net)).not.toBe(firstIp);

    const started = Date.now();
    await pollUntil((seen) => seen.has("second"));
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("spreads requests over a new replica without a restart", async () => {
    await startFake({
      network: net,
      alias: "backend",
      port: 3001,
      name: "third",
      routes: BACKEND_ROUTES,
    });
    // Both addresses come back for "backend"; nginx rotates them per request.
    const seen = await pollUntil((names) => names.has("second") && names.has("third"));
    expect([...seen].sort()).toEqual(["second", "third"]);
  });
});

describe("frontend container with a counter replica failing visits", () => {
  let url: string;
  let failing: Fake;
  let working: Fake;

  beforeAll(async () => {
    const net = await createNetwork("retry");
    const counterFake = { network: net, alias: "counter", port: 3002 };
    [failing, working] = await Promise.all([
      startFake({
        ...counterFake,
        name: "failing",
        // A 502 (a gateway of its own failing): Nginx tries the next replica. The
        // counter's own 503 (PostgreSQL unreachable) is passed on instead, tested below.
        routes: { "POST /visits": { status: 502, body: { error: "bad gateway" } } },
      }),
      startFake({ ...counterFake, name: "working", routes: COUNTER_ROUTES }),
    ]);
    ({ url } = await startFrontend("retry", { network: net }));
  });

  it("sends a visit again to the other replica, with the same Idempotency-Key", async () => {
    // Round-robin: within two visits one goes to the failing replica first.
    const refusedByFailing = async () =>
      (await failing.received()).find((r) => r.url.startsWith("/visits?retry="));
    for (let i = 0; i < 10 && !(await refusedByFailing()); i++) {
      const res = await fetch(`${url}/api/visits?retry=${i}`, { method: "POST" });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ count: 42 });
      expect(res.headers.get("x-served-by")).toBe("working");
    }
    const first = await refusedByFailing();
    expect(first).toMatchObject({ method: "POST" });
    const again = (await working.received()).find((r) => r.url === first?.url);
    expect(again).toMatchObject({ method: "POST" });
    expect(first?.headers["idempotency-key"]).toMatch(/^[0-9a-f]{32}$/);
    expect(again?.headers["idempotency-key"]).toBe(first?.headers["idempotency-key"]);
  });
});

describe("frontend container with a counter answering 503 (PostgreSQL unreachable)", () => {
  let url: string;
  let replicas: Fake[];

  beforeAll(async () => {
    // Two replicas, both answering 503 (PostgreSQL is down for all of them alike): a
    // second try, on the same replica or the other, would reach one of them.
    const net = await createNetwork("unavailable");
    const unavailable = {
      network: net,
      alias: "counter",
      port: 3002,
      routes: { "POST /visits": { status: 503, body: { error: "Visit counter unavailable" } } },
    } as const;
    replicas = await Promise.all([
      startFake({ ...unavailable, name: "unavailable-1" }),
      startFake({ ...unavailable, name: "unavailable-2" }),
    ]);
    ({ url } = await startFrontend("unavailable", { network: net }));
  });

  it("passes the counter's own 503 on, with its JSON body, without trying again", async () => {
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`${url}/api/visits?once=${i}`, { method: "POST" });
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({ error: "Visit counter unavailable" });
      // Each answered after exactly one attempt, over both replicas.
      const attempts = (await Promise.all(replicas.map((r) => r.received()))).flat();
      expect(attempts.filter((r) => r.url === `/visits?once=${i}`)).toHaveLength(1);
    }
  });
});
