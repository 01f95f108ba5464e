import { describe, expect, it } from "vitest";
import { ComposeProject } from "./support/compose.ts";

// docker-compose.monitoring.yml on top of the development and the production files,
// resolved by `docker compose config` without starting anything.

interface Service {
  ports?: { target: number; host_ip?: string }[];
  networks?: Record<string, unknown>;
  healthcheck?: { test?: string[] };
  read_only?: boolean;
  cap_drop?: string[];
  security_opt?: string[];
  user?: string;
  environment?: Record<string, string>;
  deploy?: { resources?: { limits?: { cpus?: string; memory?: string; pids?: number } } };
}

const MONITORING = ["prometheus", "nginx-exporter", "postgres-exporter", "redis-exporter"];

async function resolved(files: string[]): Promise<Record<string, Service>> {
  // Secrets are bind-mounted files: the production ones need not exist for `config`.
  const project = new ComposeProject({ files });
  return (
    JSON.parse(await project.compose(["config", "--format", "json"])) as {
      services: Record<string, Service>;
    }
  ).services;
}

describe.each([
  ["development", ["docker-compose.yml", "docker-compose.override.yml"]],
  ["production", ["docker-compose.yml", "docker-compose.prod.yml"]],
])("monitoring on the %s stack", async (_name, files) => {
  const services = await resolved([...files, "docker-compose.monitoring.yml"]);

  it("adds Prometheus and the three exporters, and puts every scraped service on its network", () => {
    for (const name of MONITORING) expect(services[name], name).toBeDefined();
    for (const name of ["frontend", "backend", "counter", ...MONITORING])
      expect(Object.keys(services[name]?.networks ?? {}), name).toContain("monitoring");
  });

  it("publishes only Prometheus' port, on loopback", () => {
    for (const name of MONITORING.slice(1)) expect(services[name]?.ports, name).toBeUndefined();
    expect(services.prometheus?.ports).toEqual([
      expect.objectContaining({ target: 9090, host_ip: "127.0.0.1" }),
    ]);
  });

  it("hardens every monitoring service and gives each a healthcheck", () => {
    for (const name of MONITORING) {
      const service = services[name] ?? {};
      expect(service.read_only, name).toBe(true);
      expect(service.cap_drop, name).toEqual(["ALL"]);
      expect(service.security_opt, name).toContain("no-new-privileges:true");
      expect(service.user, name).toMatch(/^[1-9]\d*:[1-9]\d*$/);
      expect(service.deploy?.resources?.limits?.memory, name).toBeDefined();
      expect(service.deploy?.resources?.limits?.pids, name).toBeGreaterThan(0);
      expect(service.healthcheck?.test?.[0], name).toBe("CMD");
    }
  });

  it("gives the exporters their passwords as files, never as values", () => {
    for (const name of MONITORING) {
      for (const [key, value] of Object.entries(services[name]?.environment ?? {})) {
        if (/PASS/.test(key)) expect(value, `${name} ${key}`).toMatch(/^\/run\/secrets\//);
      }
    }
    expect(services["postgres-exporter"]?.environment?.DATA_SOURCE_USER).toBe("monitoring");
  });
});
