import { execFile } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** A throwaway certificate authority and a server certificate it signed, as PEM. */
export interface TestPki {
  caCertificate: string;
  serverCertificate: string;
  serverKey: string;
  /**
   * base64 SHA-256 of the CA's public key, for Chromium's
   * --ignore-certificate-errors-spki-list, which only looks at the certificates the
   * server sends: serve the CA certificate after the server's (a chain file).
   */
  caSpkiHash: string;
}

/**
 * Made with openssl, as an operator would: a CA valid for two days, and a certificate
 * for localhost and 127.0.0.1 signed by it. Nothing is left on disk.
 */
export async function makeTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), "e2e-pki-"));
  const file = (name: string) => join(dir, name);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  try {
    await run("openssl", [
      ...["req", "-x509", ...ec, "-days", "2", "-subj", "/CN=e2e throwaway CA"],
      ...["-addext", "basicConstraints=critical,CA:TRUE"],
      ...["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
      ...["-keyout", file("ca.key"), "-out", file("ca.pem")],
    ]);
    await run("openssl", [
      ...["req", ...ec, "-subj", "/CN=localhost"],
      ...["-keyout", file("server.key"), "-out", file("server.csr")],
    ]);
    await writeFile(
      file("server.ext"),
      "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    );
    await run("openssl", [
      ...["x509", "-req", "-in", file("server.csr"), "-days", "2"],
      ...["-CA", file("ca.pem"), "-CAkey", file("ca.key"), "-CAcreateserial"],
      ...["-extfile", file("server.ext"), "-out", file("server.pem")],
    ]);
    const caCertificate = await readFile(file("ca.pem"), "utf8");
    const spki = new X509Certificate(caCertificate).publicKey.export({
      type: "spki",
      format: "der",
    });
    return {
      caCertificate,
      serverCertificate: await readFile(file("server.pem"), "utf8"),
      serverKey: await readFile(file("server.key"), "utf8"),
      caSpkiHash: createHash("sha256").update(spki).digest("base64"),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
