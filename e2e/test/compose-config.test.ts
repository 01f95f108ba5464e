import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ComposeProject, REPO_ROOT } from "./support/compose.ts";

// `docker compose config` resolves and validates a combination of files; these
// tests assert what the production combination promises, without starting it.

interface Service {
  image?: string;
  networks?: Record<string, unknown>;
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

async function resolvedConfig(
  files: string[],
  env: Record<string, string> = {},
): Promise<{
  services: Record<string, Service>;
  networks: Record<string, { internal?: boolean }>;
}> {
  const project = new ComposeProject({ files, env });
  return JSON.parse(await project.compose(["config", "--format", "json"]));
}

const BASE = ["docker-compose.yml"];
const PROD = [...BASE, "docker-compose.prod.yml"];
const PROXIED = [...PROD, "docker-compose.proxied.yml"];
const BALANCERS = { TRUSTED_PROXIES: "10.0.0.5 10.0.1.0/24" };

type Port = { target: number; host_ip?: string; mode?: string };

describe("compose files", () => {
  it.each([
    ["base", ["docker-compose.yml"]],
    ["base + development override", ["docker-compose.yml", "docker-compose.override.yml"]],
    ["base + production", ["docker-compose.yml", "docker-compose.prod.yml"]],
    [
      "base + development override + Compose Watch",
      ["docker-compose.yml", "docker-compose.override.yml", "docker-compose.watch.yml"],
    ],
    ["base + production + load balancer", PROXIED],
  ])("%s is valid", async (name, files) => {
    const config = await resolvedConfig(files, BALANCERS);
    // Production adds the scheduled backups.
    const extra = name.includes("production") ? ["backup"] : [];
    expect(Object.keys(config.services).sort()).toEqual(
      ["backend", "cache", "counter", "db", "db-setup", "frontend", "migrate", ...extra].sort(),
    );
  });

  it(".env.example names every variable the compose files interpolate", async () => {
    const files = (await readdir(REPO_ROOT)).filter((f) => /^docker-compose.*\.yml$/.test(f));
    const used = new Set<string>();
    for (const file of files) {
      const text = await readFile(join(REPO_ROOT, file), "utf8");
      // `${NAME`, not `$${NAME` (an escaped $: the container's shell reads it).
      for (const [, name] of text.matchAll(/(?<!\$)\$\{([A-Z][A-Z0-9_]*)/g))
        used.add(name as string);
    }
    const example = await readFile(join(REPO_ROOT, ".env.example"), "utf8");
    // Set (NAME=…) or shown commented out (# NAME=…).
    const listed = new Set([...example.matchAll(/^#? ?([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]));
    expect(used.size).toBeGreaterThan(20);
    expect([...used].filter((name) => !listed.has(name)).sort()).toEqual([]);
  });

  describe("production", async () => {
    const { services, networks } = await resolvedConfig([
      "docker-compose.yml",
      "docker-compose.prod.yml",
    ]);
    const entries = Object.entries(services);
    // db-setup and migrate run once per `up` and exit: no health to check, nothing to restart.
    const ONE_SHOT = new Set(["db-setup", "migrate"]);

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
      expect(secretNames(services.counter)).toEqual([
        "postgres_counter_password",
        "redis_password",
      ]);
      expect(secretNames(services.db)).toEqual(["postgres_password"]);
      expect(secretNames(services["db-setup"])).toEqual([
        "postgres_backup_password",
        "postgres_counter_password",
        "postgres_monitoring_password",
        "postgres_owner_password",
        "postgres_password",
      ]);
      expect(secretNames(services.migrate)).toEqual(["postgres_owner_password"]);
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
        if (ONE_SHOT.has(name)) expect(service.restart, name).toBe("no");
        else {
          expect(service.healthcheck?.test, `${name} healthcheck`).toBeDefined();
          expect(service.healthcheck?.disable, name).toBeFalsy();
          expect(service.restart, name).toBe("unless-stopped");
        }
        expect(service.read_only, `${name} read_only`).toBe(true);
        expect(service.cap_drop, `${name} cap_drop`).toEqual(["ALL"]);
        expect(service.security_opt, name).toContain("no-new-privileges:true");
        expect(service.logging?.options?.["max-size"], `${name} log rotation`).toBeDefined();
        const limits = service.deploy?.resources?.limits;
        expect(limits?.cpus, `${name} cpus`).toBeDefined();
        expect(limits?.memory, `${name} memory`).toBeDefined();
        expect(limits?.pids, `${name} pids`).toBeGreaterThan(0);
      }
    });

    it("runs no service as root", () => {
      // The Node images set USER node themselves; the others are set here.
      for (const name of ["frontend", "db", "db-setup", "cache", "backup"]) {
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
      // The counter logs in as its own role: the superuser's password reaches no app.
      expect(services.counter?.environment?.POSTGRES_PASSWORD_FILE).toBe(
        "/run/secrets/postgres_counter_password",
      );
      expect(services.counter?.environment?.POSTGRES_USER).toBe("counter");
      const superuserSecret = entries
        .filter(([, service]) =>
          (service.secrets as { source: string }[] | undefined)?.some(
            (secret) => secret.source === "postgres_password",
          ),
        )
        .map(([name]) => name);
      expect(superuserSecret.sort()).toEqual(["db", "db-setup"]);
    });

    it("lets no long-running service log in as the schema's owner", () => {
      // Only the one-shots hold the owner's password: db-setup sets it, migrate uses it.
      const ownerSecret = entries
        .filter(([, service]) =>
          (service.secrets as { source: string }[] | undefined)?.some(
            (secret) => secret.source === "postgres_owner_password",
          ),
        )
        .map(([name]) => name);
      expect(ownerSecret.sort()).toEqual(["db-setup", "migrate"]);
      for (const name of ownerSecret) expect(services[name]?.restart, name).toBe("no");
      expect(services.migrate?.environment?.POSTGRES_USER).toBe("counter_owner");
      expect(services.migrate?.environment?.POSTGRES_PASSWORD_FILE).toBe(
        "/run/secrets/postgres_owner_password",
      );
    });

    it("starts the counter only after the migrate job succeeded, with the counter's image", () => {
      const counter = services.counter as Service & {
        depends_on?: Record<string, { condition: string }>;
      };
      expect(counter.depends_on?.migrate?.condition).toBe("service_completed_successfully");
      expect(services.migrate?.image).toBe(services.counter?.image);
    });

    it("gives only the frontend a network with a route out", () => {
      const routed = Object.keys(networks).filter((name) => !networks[name]?.internal);
      expect(routed).toEqual(["edge"]);
      for (const [name, service] of entries) {
        const joined = Object.keys(service.networks ?? {});
        if (name === "frontend") expect(joined.sort()).toEqual(["edge", "front"]);
        else expect(joined, name).not.toContain("edge");
      }
    });
  });

  it.each([
    ["base", BASE],
    ["production", PROD],
    ["production behind a load balancer", PROXIED],
  ])("%s publishes the frontend on FRONTEND_BIND, every interface by default", async (_, files) => {
    const hosts = async (env: Record<string, string>) => {
      const { services } = await resolvedConfig(files, { ...BALANCERS, ...env });
      return ((services.frontend?.ports ?? []) as Port[]).map((port) => port.host_ip);
    };
    const defaults = await hosts({});
    expect(defaults.length).toBeGreaterThan(0);
    expect(new Set(defaults)).toEqual(new Set(["0.0.0.0"]));
    const bound = await hosts({ FRONTEND_BIND: "127.0.0.1" });
    expect(bound).toHaveLength(defaults.length);
    expect(new Set(bound)).toEqual(new Set(["127.0.0.1"]));
  });

  it("development adds backend and counter to edge: their published ports need it", async () => {
    const { services } = await resolvedConfig([...BASE, "docker-compose.override.yml"]);
    for (const name of ["backend", "counter"]) {
      expect(Object.keys(services[name]?.networks ?? {}), name).toContain("edge");
      expect(services[name]?.ports?.length, name).toBeGreaterThan(0);
    }
    for (const name of ["db", "cache"])
      expect(Object.keys(services[name]?.networks ?? {}), name).not.toContain("edge");
  });

  // Unset and empty interpolate alike; empty is passed explicitly so a developer's .env
  // cannot decide the outcome. Production passes the emptiness on (the frontend then
  // refuses to start, apps/frontend/test/edge.test.ts), development keeps localhost.
  it.each([
    ["development", "localhost", [...BASE, "docker-compose.override.yml"]],
    ["production", "", PROD],
    ["production behind a load balancer", "", PROXIED],
  ])("%s without a PUBLIC_HOST gives the frontend %j", async (_, expected, files) => {
    const { services } = await resolvedConfig(files, { ...BALANCERS, PUBLIC_HOST: "" });
    expect(services.frontend?.environment?.PUBLIC_HOST).toBe(expected);
    const named = await resolvedConfig(files, { ...BALANCERS, PUBLIC_HOST: "example.com" });
    expect(named.services.frontend?.environment?.PUBLIC_HOST).toBe("example.com");
  });

  describe("production behind a load balancer (docker-compose.proxied.yml)", async () => {
    // One image tag for both (each project otherwise tags its images with its own name).
    const tag = { IMAGE_TAG: "config-test" };
    const [prod, proxied] = await Promise.all([
      resolvedConfig(PROD, tag),
      resolvedConfig(PROXIED, { ...tag, ...BALANCERS }),
    ]);
    const frontend = proxied.services.frontend;

    it("serves plain HTTP on 8080 only, without certificates, trusting the balancer alone", () => {
      expect(frontend?.environment?.TLS).toBe("off");
      expect(frontend?.environment?.TRUSTED_PROXIES).toBe(BALANCERS.TRUSTED_PROXIES);
      expect(frontend?.secrets ?? []).toEqual([]);
      expect(
        ((frontend?.ports ?? []) as Port[]).map(({ target, mode }) => ({ target, mode })),
      ).toEqual([{ target: 8080, mode: "host" }]);
    });

    it("changes nothing else of production", () => {
      const { environment, secrets, ports, ...rest } = frontend ?? {};
      const {
        environment: prodEnvironment,
        secrets: _,
        ports: __,
        ...prodRest
      } = prod.services.frontend ?? {};
      expect(rest).toEqual(prodRest);
      expect(environment).toEqual({ ...prodEnvironment, ...BALANCERS, TLS: "off" });
      for (const name of ["backend", "counter", "db", "cache"]) {
        expect(proxied.services[name], name).toEqual(prod.services[name]);
      }
    });

    it("refuses to start without the balancer's addresses", async () => {
      await expect(resolvedConfig(PROXIED)).rejects.toThrow(
        /set TRUSTED_PROXIES to the load balancer's addresses or CIDRs/,
      );
    });
  });
});

describe("the development counter's own settings (apps/counter/.env.local)", () => {
  it("reach the migrate job too, for its COUNTER_ID, but not its login", async () => {
    const project = await new ComposeProject({
      files: ["docker-compose.yml", "docker-compose.override.yml"],
      copyRepo: true,
    }).prepare();
    try {
      await writeFile(
        join(project.directory, "apps/counter/.env.local"),
        "COUNTER_ID=shop\nPOSTGRES_USER=counter\n",
      );
      const { services } = JSON.parse(await project.compose(["config", "--format", "json"])) as {
        services: Record<string, Service>;
      };
      expect(services.counter?.environment).toMatchObject({ COUNTER_ID: "shop" });
      // The row the first migration creates is the one the counter counts in...
      expect(services.migrate?.environment).toMatchObject({ COUNTER_ID: "shop" });
      // ...and the job still logs in as the schema's owner.
      expect(services.migrate?.environment?.POSTGRES_USER).toBe("counter_owner");
    } finally {
      await rm(project.directory, { recursive: true, force: true });
    }
  });
});
