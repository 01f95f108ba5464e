/**
 * The part of this process's environment that describes the machine, not the test: what
 * a child process needs to run at all (PATH, HOME, locale), where the Docker daemon is,
 * and where the base images come from (the *_IMAGE names a machine without a registry
 * points at local stand-ins, as .env.example lists them). Everything else a contributor
 * may have exported (COMPOSE_FILE, COMPOSE_PROFILES, IMAGE_PREFIX, PUBLIC_HOST,
 * DOCKER_DEFAULT_PLATFORM, …) stays out: a stack under test gets only what its test sets.
 */
const MACHINE = new Set([
  "PATH",
  "HOME",
  "USER",
  "LOGNAME",
  "SHELL",
  "LANG",
  "LC_ALL",
  "TZ",
  "TMPDIR",
  // The Docker client's own settings: which daemon, with which credentials.
  "DOCKER_HOST",
  "DOCKER_CONTEXT",
  "DOCKER_CONFIG",
  "DOCKER_CERT_PATH",
  "DOCKER_TLS_VERIFY",
  // The base images (../shared/docker/setup.sh exports stand-ins for them here).
  "NODE_IMAGE",
  "NGINX_IMAGE",
  "POSTGRES_IMAGE",
  "REDIS_IMAGE",
  "PROMETHEUS_IMAGE",
  "NGINX_EXPORTER_IMAGE",
  "POSTGRES_EXPORTER_IMAGE",
  "REDIS_EXPORTER_IMAGE",
  "ALERTMANAGER_IMAGE",
  "PUSHGATEWAY_IMAGE",
  "REGISTRY_IMAGE",
  "KUBECTL_IMAGE",
  "PODMAN_IMAGE",
]);

/** The machine's variables of `env` (see MACHINE), without anything else it holds. */
export function machineEnvironment(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env).filter(
      (entry): entry is [string, string] => MACHINE.has(entry[0]) && entry[1] !== undefined,
    ),
  );
}
