import request from "supertest";
import { describe, expect, it } from "vitest";
import { createApp, createLogger } from "../src/index.ts";

const AUTHORIZATION = "Bearer s3cret-token";
const COOKIE = "session=c00kie-value";

/** A service's logger writing its lines into `lines`. */
function capturingLogger(level: string, lines: string[]) {
  return createLogger({ name: "test", level, destination: { write: (l) => lines.push(l) } });
}

describe("createLogger", () => {
  it("redacts Authorization and Cookie from a logged request, keeps the other headers", () => {
    const lines: string[] = [];
    const req = {
      method: "GET",
      url: "/",
      headers: { authorization: AUTHORIZATION, cookie: COOKIE, host: "x" },
    };
    capturingLogger("info", lines).warn({ req }, "a raw request");
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] ?? "{}").req.headers).toEqual({
      authorization: "[Redacted]",
      cookie: "[Redacted]",
      host: "x",
    });
  });

  it("keeps credentials out of a service's request logs, failures included", async () => {
    const lines: string[] = [];
    const app = createApp({
      logger: capturingLogger("debug", lines),
      routes(app) {
        app.get("/ok", (_req, res) => {
          res.json({ ok: true });
        });
        app.get("/fail", () => {
          throw new Error("boom");
        });
      },
    });
    for (const path of ["/ok", "/fail", "/missing"]) {
      await request(app).get(path).set("Authorization", AUTHORIZATION).set("Cookie", COOKIE);
    }
    // One line per request (debug logs them all), the failure's with its error.
    expect(lines.map((line) => JSON.parse(line).req?.url)).toEqual(["/ok", "/fail", "/missing"]);
    for (const line of lines) {
      expect(line).not.toContain("s3cret");
      expect(line).not.toContain("c00kie");
    }
  });
});
