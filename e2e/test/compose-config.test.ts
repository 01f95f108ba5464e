import { describe, expect, it } from "vitest";
import { ComposeProject } from "./support/compose.ts";

// `docker compose config` resolves and validates a combination of files; these
// tests assert what the production combination promises, without starting it.

interface Service {
  image?: string;
  ports?: unknown[];
  volumes?: { type: string; source?: string; target?: string }[];
  healthcheck?: { test?: string[]; disable?: boolean };
  read_only?: boolean;
  cap_drop?: string[];
  security_opt?: string[];
  user?: string;
  restart?: string;
  logging?: { driver: string; options?: Record<string, string> };
  deploy?: {
    replicas?: number;
    resources?: { limits?: { cpus?: string; memory?: string; pids?: number } };
  };
  environment?: Record<string, string>;
  secrets?: unknown[];
}

async function resolvedConfig(files: string[]): Promise<{ services: Record<string, Service> }> {
  const project = new ComposeProject({ files });
  return JSON.parse(await project.compose(["config", "--format", "json"]));
}

describe("compose files", () => {
  it.each([
    ["base", ["docker-compose.yml"]],
    ["base + development override", ["docker-compose.yml", "docker-compose.override.yml"]],
    ["base + production", ["docker-compose.yml", "docker-compose.prod.yml"]],
    [
      "base + development override + Compose Watch",
      ["docker-compose.yml", "docker-compose.override.yml", "docker-compose.watch.yml"],
    ],
  ])("%s is valid", async (name, files) => {
    const config = await resolvedConfig(files);
    // Production adds the scheduled backups.
    const extra = name.includes("production") ? ["backup"] : [];
    expect(Object.keys(config.services).sort()).toEqual(
      ["backend", "cache", "counter", "db", "frontend", ...extra].sort(),
    );
  });

  describe("production", async () => {
    const { services } = await resolvedConfig(["docker-compose.yml", "docker-compose.prod.yml"]);
    const entries = Object.entries(services);

    it("has no bind mounts but the backup directory", () => {
      for (const [name, service] of entries) {
        const binds = service.volumes?.filter((v) => v.type === "bind") ?? [];
        // Backups belong on the host (BACKUP_DIR), to be copied off it.
        if (name === "backup") expect(binds.map((v) => v.target)).toEqual(["/backups"]);
        else expect(binds, name).toEqual([]);
      }
    });

    it("publishes only the frontend: HTTP (a redirect) and HTTPS", () => {
      for (const [name, service] of entries) {
        if (name === "frontend") {
          const targets = (service.ports as { target: number }[]).map((port) => port.target);
          expect(targets.sort()).toEqual([8080, 8443]);
        } else expect(service.ports ?? [], name).toEqual([]);
      }
    });

    it("takes every password and the TLS key from secret files, never from the environment", () => {
      const secretNames = (service: Service | undefined) =>
        (service?.secrets as { source: string }[] | undefined)?.map((s) => s.source).sort();
      expect(secretNames(services.frontend)).toEqual(["tls_certificate", "tls_key"]);
      expect(secretNames(services.counter)).toEqual(["postgres_password", "redis_password"]);
      expect(secretNames(services.db)).toEqual(["postgres_password"]);
      expect(secretNames(services.cache)).toEqual(["redis_password"]);
      expect(secretNames(services.backup)).toEqual(["postgres_backup_password"]);
      for (const [name, service] of entries) {
        for (const key of Object.keys(service.environment ?? {})) {
          expect(key, name).not.toMatch(/PASSWORD$|KEY$/);
        }
      }
    });

    it("hardens every service", () => {
      for (const [name, service] of entries) {
        expect(service.healthcheck?.test, `${name} healthcheck`).toBeDefined();
        expect(service.healthcheck?.disable, name).toBeFalsy();
        expect(service.read_only, `${name} read_only`).toBe(true);
        expect(service.cap_drop, `${name} cap_drop`).toEqual(["ALL"]);
        expect(service.security_opt, name).toContain("no-new-privileges:true");
        expect(service.restart, name).toBe("unless-stopped");
        expect(service.logging?.options?.["max-size"], `${name} log rotation`).toBeDefined();
        const limits = service.deploy?.resources?.limits;
        expect(limits?.cpus, `${name} cpus`).toBeDefined();
        expect(limits?.memory, `${name} memory`).toBeDefined();
        expect(limits?.pids, `${name} pids`).toBeGreaterThan(0);
      }
    });

    it("runs no service as root", () => {
      // The Node images set USER node themselves; the others are set here.
      for (const name of ["frontend", "db", "cache", "backup"]) {
        expect(services[name]?.user, name).toMatch(/^[1-9]\d*:[1-9]\d*$/);
      }
    });

    it("scales the Node services to 2 replicas", () => {
      expect(services.backend?.deploy?.replicas).toBe(2);
      expect(services.counter?.deploy?.replicas).toBe(2);
    });

    it("passes the database password only as a secret file", () => {
      for (const [name, service] of entries) {
        expect(service.environment?.POSTGRES_PASSWORD, name).toBeUndefined();
      }
      expect(services.db?.environment?.POSTGRES_PASSWORD_FILE).toBe(
        "/run/secrets/postgres_password",
      );
      expect(services.counter?.environment?.POSTGRES_PASSWORD_FILE).toBe(
        "/run/secrets/postgres_password",
      );
    });
  });
});
