import { execFile } from "node:child_process";
import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { copyRepository } from "./support/compose.ts";

const run = promisify(execFile);

// infra/init-secrets.sh in a throwaway copy of the repository: where it writes the public
// host name, and that it reads BACKUP_DIR from where Compose reads it (.env, the shell's
// variable first). Only files: no container is started.

const copies: string[] = [];
afterEach(async () => {
  await Promise.all(copies.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/** A fresh copy, with `.env` holding `env` when given. */
async function copy(env?: string): Promise<string> {
  const dir = await copyRepository("init-secrets");
  copies.push(dir);
  if (env !== undefined) await writeFile(join(dir, ".env"), env);
  return dir;
}

/** The script as a user runs it; resolves with its exit code and output, also on failure. */
async function initSecrets(dir: string, args: string[], env: Record<string, string> = {}) {
  // The test's own environment must not decide what the script reads from .env.
  const { PUBLIC_HOST: _, BACKUP_DIR: __, ...inherited } = process.env;
  try {
    const { stdout, stderr } = await run("bash", ["infra/init-secrets.sh", ...args], {
      cwd: dir,
      env: { ...inherited, ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failure = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failure.code ?? 1, stdout: failure.stdout ?? "", stderr: failure.stderr ?? "" };
  }
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

/** Whether the certificate init-secrets.sh made (or kept) is valid for `host`. */
async function certificateNames(dir: string, host: string): Promise<boolean> {
  const { stdout } = await run("openssl", [
    ...["x509", "-noout", "-in", join(dir, "secrets/tls_certificate.pem"), "-checkhost", host],
  ]);
  return !stdout.includes("does NOT match");
}

describe("infra/init-secrets.sh HOST", () => {
  it("writes PUBLIC_HOST=HOST to a new .env, and makes the certificate for HOST", async () => {
    const dir = await copy();
    const result = await initSecrets(dir, ["App.Example.test"]);
    expect(result.code, result.stderr).toBe(0);
    // Host names are case-insensitive: written as nginx compares them, in lower case.
    expect(await readFile(join(dir, ".env"), "utf8")).toBe("PUBLIC_HOST=app.example.test\n");
    expect(await certificateNames(dir, "app.example.test")).toBe(true);
  });

  it("updates the PUBLIC_HOST line of an existing .env and keeps every other line", async () => {
    const dir = await copy("# mine\nRATE_LIMIT=on\nPUBLIC_HOST=localhost\nBACKUP_KEEP=3\n");
    const result = await initSecrets(dir, ["app.example.test"]);
    expect(result.code, result.stderr).toBe(0);
    expect(await readFile(join(dir, ".env"), "utf8")).toBe(
      "# mine\nRATE_LIMIT=on\nPUBLIC_HOST=app.example.test\nBACKUP_KEEP=3\n",
    );
  });

  it("appends the line on a line of its own to a .env without a final newline", async () => {
    const dir = await copy("RATE_LIMIT=on");
    expect((await initSecrets(dir, ["app.example.test"])).code).toBe(0);
    expect(await readFile(join(dir, ".env"), "utf8")).toBe(
      "RATE_LIMIT=on\nPUBLIC_HOST=app.example.test\n",
    );
  });

  it("keeps an explicit localhost", async () => {
    const dir = await copy();
    expect((await initSecrets(dir, ["localhost"])).code).toBe(0);
    expect(await readFile(join(dir, ".env"), "utf8")).toBe("PUBLIC_HOST=localhost\n");
  });

  it("without HOST uses the PUBLIC_HOST Compose reads, and writes nothing new", async () => {
    const dir = await copy("PUBLIC_HOST=kept.example.test\n");
    const result = await initSecrets(dir, []);
    expect(result.code, result.stderr).toBe(0);
    expect(await readFile(join(dir, ".env"), "utf8")).toBe("PUBLIC_HOST=kept.example.test\n");
    expect(await certificateNames(dir, "kept.example.test")).toBe(true);
  });

  it("refuses a HOST that is not a host name, before it writes anything", async () => {
    for (const host of ["evil.example/x", "a b", "example.com:8443", "-x.example"]) {
      const dir = await copy();
      const result = await initSecrets(dir, [host]);
      expect(result.code, host).toBe(1);
      expect(result.stderr, host).toContain("HOST must be a host name such as example.com");
      expect(await exists(join(dir, ".env")), host).toBe(false);
      expect(await exists(join(dir, "secrets/redis_password.txt")), host).toBe(false);
    }
  });

  it("says so when the certificate it keeps is for another name", async () => {
    const dir = await copy();
    expect((await initSecrets(dir, ["old.example.test"])).code).toBe(0);
    const result = await initSecrets(dir, ["new.example.test"]);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain(
      "secrets/tls_certificate.pem is not valid for new.example.test",
    );
    expect(await readFile(join(dir, ".env"), "utf8")).toBe("PUBLIC_HOST=new.example.test\n");
  });
});

describe("infra/init-secrets.sh and BACKUP_DIR", () => {
  /** The host directory Compose mounts into the backup service. */
  async function composeBackupSource(dir: string, env: Record<string, string> = {}) {
    const { PUBLIC_HOST: _, BACKUP_DIR: __, ...inherited } = process.env;
    const { stdout } = await run(
      "docker",
      [
        "compose",
        "-f",
        "docker-compose.yml",
        "-f",
        "docker-compose.prod.yml",
        "config",
        "--format",
        "json",
      ],
      { cwd: dir, env: { ...inherited, ...env } },
    );
    const config = JSON.parse(stdout) as {
      services: { backup: { volumes: { target: string; source: string }[] } };
    };
    return config.services.backup.volumes.find((v) => v.target === "/backups")?.source;
  }

  it("makes the BACKUP_DIR of .env, the directory Compose mounts", async () => {
    const dir = await copy("BACKUP_DIR=./srv-backups\n");
    const result = await initSecrets(dir, ["localhost"]);
    expect(result.code, result.stderr).toBe(0);
    expect(await exists(join(dir, "srv-backups"))).toBe(true);
    expect(await exists(join(dir, "backups"))).toBe(false);
    expect(await composeBackupSource(dir)).toBe(join(dir, "srv-backups"));
  });

  it("takes the shell's BACKUP_DIR over the one in .env, as Compose does", async () => {
    const dir = await copy("BACKUP_DIR=./srv-backups\n");
    await mkdir(join(dir, "elsewhere"));
    const env = { BACKUP_DIR: join(dir, "elsewhere/backups") };
    const result = await initSecrets(dir, ["localhost"], env);
    expect(result.code, result.stderr).toBe(0);
    expect(await exists(join(dir, "elsewhere/backups"))).toBe(true);
    expect(await exists(join(dir, "srv-backups"))).toBe(false);
    expect(await composeBackupSource(dir, env)).toBe(join(dir, "elsewhere/backups"));
  });
});
