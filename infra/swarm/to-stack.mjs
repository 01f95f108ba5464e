// Turns the output of `docker compose config --format json` into a file that
// `docker stack deploy` accepts. Compose and Swarm read the same Compose
// Specification, but the Swarm loader (docker stack) still validates against the
// older v3 schema: it rejects `depends_on` conditions and the top-level `name`,
// and has no use for `build`; Swarm also ignores `tmpfs`, and runs a one-shot service
// as a job. Everything else (images, replicas, limits, healthchecks, networks, volumes,
// configs, secrets) passes through unchanged, except the backup service
// (SERVICES_TO_DROP).
//
//   docker compose -f docker-compose.yml -f docker-compose.prod.yml config --format json \
//     | node infra/swarm/to-stack.mjs | docker stack deploy -c - visit-counter

import { text } from "node:stream/consumers";

/** Service keys the Swarm loader rejects, and why dropping them is safe. */
const SERVICE_KEYS_TO_DROP = {
  // Swarm deploys images; `docker compose build` makes them first.
  build: true,
  // Swarm starts services in any order; the apps retry their dependencies.
  depends_on: true,
  // Swarm restarts through deploy.restart_policy instead.
  restart: true,
  // Compose's (the migrate job never pulls its image); Swarm pulls as its nodes need.
  pull_policy: true,
};

/**
 * Services left out of the stack, and why. The backup service writes to a directory of
 * the host that ran `docker compose config` (a bind mount of BACKUP_DIR), and its
 * companions infra/backup.sh and infra/restore.sh drive Compose (`docker compose run`,
 * `exec`): on a swarm its task may run on another node, where that directory is missing
 * or on another disk (docs/SWARM.md).
 */
const SERVICES_TO_DROP = { backup: true };
/** Configs only those services use. */
const CONFIGS_TO_DROP = { "pg-backup": true };

/**
 * Swarm's healthcheck for the Node services: the admin port's `/healthz` where Compose
 * asks `/readyz` (docker-compose.yml's x-node-service). Swarm both gates and *restarts*
 * on its healthcheck, Compose only gates: with `/readyz` a database outage would get
 * every counter replaced, over and over, while none of them could help. `/healthz`
 * fails only on errors that waiting will not heal (a refused login, a missing schema),
 * where a restart is what Swarm should do; the app's port still opens only once ready
 * (the check's second request), so a new task is put in rotation only when it can serve
 * (docs/DECISIONS.md).
 */
export function livenessHealthcheck(name, healthcheck) {
  if (!healthcheck?.test?.some((arg) => arg.includes("'/readyz'"))) return healthcheck;
  const test = healthcheck.test.map((arg) => arg.replaceAll("'/readyz'", "'/healthz'"));
  if (test.some((arg) => arg.includes("/readyz")))
    throw new Error(
      `service ${name}: healthcheck names /readyz in a way to-stack.mjs does not know`,
    );
  return { ...healthcheck, test };
}

/**
 * Swarm ignores a service's `tmpfs:` paths, which leaves them read-only under
 * `read_only: true`. An anonymous volume takes their place: it starts as a copy of the
 * image's directory, owner included (the images give these paths to their users), and
 * belongs to the task alone. (A Swarm tmpfs mount would come up owned by root and not
 * writable for them: the Swarm loader takes no uid or mode for it.) So on Swarm what a
 * service writes there is on the node's disk, the cache's password file included: the
 * secret file it is copied from is on that disk too.
 */
function tmpfsAsVolumes(service) {
  const paths = (service.tmpfs ?? []).map((entry) => entry.split(":")[0]);
  return [...(service.volumes ?? []), ...paths.map((target) => ({ type: "volume", target }))];
}

export function toStack(compose) {
  const stack = { ...compose };
  // The stack name comes from `docker stack deploy … NAME`.
  delete stack.name;
  for (const key of Object.keys(stack)) if (key.startsWith("x-")) delete stack[key];

  const services = Object.entries(compose.services).filter(([name]) => !SERVICES_TO_DROP[name]);
  for (const name of Object.keys(CONFIGS_TO_DROP)) delete stack.configs?.[name];
  stack.services = Object.fromEntries(
    services.map(([name, service]) => {
      const converted = Object.fromEntries(
        Object.entries(service).filter(
          // Compose writes unset values as null (e.g. `entrypoint: null`); the v3 schema does not.
          ([key, value]) => !SERVICE_KEYS_TO_DROP[key] && value !== null,
        ),
      );
      // `docker compose config` writes some values with other types than the v3 schema wants.
      const limits = service.deploy?.resources?.limits;
      if (limits?.cpus !== undefined) limits.cpus = String(limits.cpus);
      converted.ports = service.ports?.map(({ host_ip: hostIp, ...port }) => {
        // The v3 schema has no `host_ip` (FRONTEND_BIND): Swarm publishes on every
        // address. Dropped when it says so anyway; a narrower bind is refused rather than
        // silently widened.
        if (hostIp !== undefined && hostIp !== "0.0.0.0")
          throw new Error(`service ${name}: Swarm cannot publish on ${hostIp} only (host_ip)`);
        return { ...port, published: Number(port.published) };
      });
      if (!converted.ports) delete converted.ports;
      // A one-shot (db-setup, migrate: `restart: "no"`, and `depends_on` is dropped)
      // becomes a Swarm job: run until it has exited 0 once, retried while db (or, for
      // migrate, the roles) is not up yet. The counters start beside it and are not ready
      // until the schema has the version they need (PostgresStore.checkSchema).
      if (service.restart === "no")
        converted.deploy = { ...service.deploy, mode: "replicated-job" };
      if (service.healthcheck)
        converted.healthcheck = livenessHealthcheck(name, service.healthcheck);
      delete converted.tmpfs;
      converted.volumes = tmpfsAsVolumes(service);
      if (converted.volumes.length === 0) delete converted.volumes;
      return [name, converted];
    }),
  );

  // Compose fixes resource names to "<project>_<name>"; Swarm prefixes them with
  // the stack name itself, so the explicit names are dropped.
  for (const section of ["networks", "volumes", "configs", "secrets"]) {
    if (!stack[section]) continue;
    stack[section] = Object.fromEntries(
      Object.entries(stack[section]).map(([key, value]) => {
        const { name: _name, ...rest } = value ?? {};
        return [key, rest];
      }),
    );
  }
  return stack;
}

if (import.meta.main) {
  const compose = JSON.parse(await text(process.stdin));
  // JSON is YAML: docker stack deploy -c - reads it as it is.
  process.stdout.write(`${JSON.stringify(toStack(compose), null, 2)}\n`);
}
