import { X509Certificate } from "node:crypto";
import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { eventually, freePorts, makeTestPki } from "../src/index.ts";

describe("freePorts", () => {
  it("returns distinct ports that can be listened on", async () => {
    const ports = await freePorts(3);
    expect(new Set(ports).size).toBe(3);
    for (const port of ports) {
      const server = createServer();
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, "0.0.0.0", resolve);
      });
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe("eventually", () => {
  it("retries until the check passes and returns its value", async () => {
    let calls = 0;
    const value = await eventually(
      async () => {
        calls++;
        if (calls < 3) throw new Error(`not yet (${calls})`);
        return "done";
      },
      5_000,
      1,
    );
    expect({ value, calls }).toEqual({ value: "done", calls: 3 });
  });

  it("rethrows the check's last error after the timeout", async () => {
    let calls = 0;
    const error = await eventually(
      async () => {
        calls++;
        throw new Error(`failure ${calls}`);
      },
      50,
      5,
    ).catch((thrown: Error) => thrown);
    expect(calls).toBeGreaterThan(1);
    expect(error).toEqual(new Error(`failure ${calls}`));
  });
});

describe("makeTestPki", () => {
  it("makes a server certificate for localhost and 127.0.0.1 signed by its CA", async () => {
    const pki = await makeTestPki();
    const ca = new X509Certificate(pki.caCertificate);
    const server = new X509Certificate(pki.serverCertificate);
    expect(ca.ca).toBe(true);
    expect(server.ca).toBe(false);
    expect(server.verify(ca.publicKey)).toBe(true);
    expect(server.checkHost("localhost")).toBe("localhost");
    expect(server.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(pki.serverKey).toContain("PRIVATE KEY");
  });
});
