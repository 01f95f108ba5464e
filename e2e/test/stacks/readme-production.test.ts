import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../support/compose.ts";
import { loopbackClient, productionStack } from "../support/production.ts";
import { codeBlocks, normalize, parseSection, section } from "../support/readme.ts";

// The README's production block, copied from the README and run verbatim in a clean copy
// of the repository, as on a first server: its placeholder host (example.com) replaced by a
// name that is not localhost, which the client resolves to 127.0.0.1 (`curl --resolve`,
// loopbackClient), and BACKUP_DIR set in .env, where the script and Compose must both read
// it. Its examples must print what the README shows. The ports are free ones
// (FRONTEND_PORT, FRONTEND_HTTPS_PORT in the environment, as .env would move them).
// Then, on the same stack, the docs' two later recipes: another name
// (docs/TROUBLESHOOTING.md) and a load balancer in front (docs/PRODUCTION.md), each
// copied from its page.

const NAME = "counter.example.test";
const { stack, httpPort, httpsPort } = await productionStack();
let readme: { setup: string[]; examples: { command: string; output: string }[] };
let backupDir: string;

/** The README's example.com, on its default ports, as this run's name on its free ports. */
const localize = (text: string) =>
  text
    .replaceAll("example.com:8443", `${NAME}:${httpsPort}`)
    .replaceAll("example.com:8080", `${NAME}:${httpPort}`)
    .replaceAll("example.com", NAME);

beforeAll(async () => {
  readme = parseSection(await readFile(join(REPO_ROOT, "README.md"), "utf8"), "Production");
  await stack.prepare();
  // An absolute directory other than the default ./backups, as on a server.
  backupDir = join(stack.directory, "srv/backups");
  await mkdir(join(stack.directory, "srv"));
  await writeFile(join(stack.directory, ".env"), `BACKUP_DIR=${backupDir}\n`);
  for (const command of readme.setup) await stack.shell(localize(command));
}, 900_000);
afterAll(async () => {
  await stack.destroy();
});

describe("the README's production block", () => {
  it("is the two commands of the recipe", () => {
    expect(readme.setup).toEqual([
      "bash infra/init-secrets.sh example.com",
      "docker compose -f docker-compose.yml -f docker-compose.prod.yml up -d --build --wait",
    ]);
  });

  it("wrote the name where Compose reads it, kept .env's other line, and backs up into its BACKUP_DIR", async () => {
    expect(await readFile(join(stack.directory, ".env"), "utf8")).toBe(
      `BACKUP_DIR=${backupDir}\nPUBLIC_HOST=${NAME}\n`,
    );
    // `up --wait` waited for the backup service's health: a first dump in BACKUP_DIR.
    expect((await stat(backupDir)).isDirectory()).toBe(true);
    await expect(stat(join(stack.directory, "backups"))).rejects.toThrow();
    const dumps = await stack.shell(`ls '${backupDir}'`);
    expect(dumps.trim().split("\n").length).toBeGreaterThan(0);
  });

  it("prints what the README shows: a visit, the redirect, and 421 for another host", async () => {
    expect(readme.examples.map(({ command }) => command.split(" ")[0])).toEqual([
      "curl",
      "curl",
      "curl",
    ]);
    const resolve = [httpPort, httpsPort].map((port) => `--resolve ${NAME}:${port}:127.0.0.1`);
    for (const { command, output } of readme.examples) {
      // The name resolves to this machine in curl alone: no DNS, no /etc/hosts.
      const line = localize(command).replace(/^curl /, `curl ${resolve.join(" ")} `);
      expect(normalize(await stack.shell(line)), command).toBe(normalize(localize(output)));
    }
  });

  it("serves the page by its name, with the certificate made for it", async () => {
    const certificate = await readFile(
      join(stack.directory, "secrets/tls_certificate.pem"),
      "utf8",
    );
    // No servername override: the certificate is checked against the name itself.
    const client = loopbackClient(certificate);
    // Another Host over the same TLS name (SNI and certificate check for NAME).
    const otherHost = loopbackClient(certificate, NAME);
    try {
      const page = await client.fetch(`https://${NAME}:${httpsPort}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain("Fetch Data from Backend");
      const other = await otherHost.fetch(`https://other.example:${httpsPort}/`);
      await other.text();
      expect(other.status).toBe(421);
    } finally {
      await Promise.all([client.close(), otherHost.close()]);
    }
  });
});

/** `curl` with every name on these ports resolved to 127.0.0.1, as on the client machine. */
const curl = (names: string[]) =>
  `curl ${names.flatMap((name) => [httpPort, httpsPort].map((port) => `--resolve ${name}:${port}:127.0.0.1`)).join(" ")}`;

describe("the docs' later recipes, on the same stack", () => {
  const NEW_NAME = "visits.example.test";

  it("another name (TROUBLESHOOTING.md): a certificate for it, served, the old name refused", async () => {
    const text = section(
      await readFile(join(REPO_ROOT, "docs/TROUBLESHOOTING.md"), "utf8"),
      "The browser warns about the certificate",
    );
    const recipe = text.slice(text.indexOf("For another name:"));
    const commands = [
      ...recipe.replace(/\s+/g, " ").matchAll(/`((?:rm|bash|docker compose) [^`]+)`/g),
    ]
      .map(([, command]) => command ?? "")
      .slice(0, 3);
    expect(commands.map((command) => command.split(" ")[0])).toEqual(["rm", "bash", "docker"]);
    for (const command of commands)
      await stack.shell(command.replaceAll("your.host.name", NEW_NAME));

    expect(await readFile(join(stack.directory, ".env"), "utf8")).toContain(
      `PUBLIC_HOST=${NEW_NAME}\n`,
    );
    const served = await stack.shell(
      `${curl([NEW_NAME])} -s --cacert secrets/tls_certificate.pem -X POST https://${NEW_NAME}:${httpsPort}/api/visits`,
    );
    expect(JSON.parse(served)).toEqual({ count: expect.any(Number) });
    const old = await stack.shell(
      `${curl([NAME])} -s -o /dev/null -w '%{http_code}' http://${NAME}:${httpPort}/`,
    );
    expect(old).toBe("421");
  });

  it("a load balancer in front (PRODUCTION.md): plain HTTP for the balancer's name only", async () => {
    const text = section(await readFile(join(REPO_ROOT, "docs/PRODUCTION.md"), "utf8"), "HTTPS");
    const block = codeBlocks(text).find(({ text }) => text.includes("docker-compose.proxied.yml"));
    if (!block) throw new Error("no load balancer block in PRODUCTION.md's HTTPS section");
    // Lines continued with `\` joined, comments dropped.
    const commands = block.text
      .replace(/\\\n\s*/g, "")
      .split("\n")
      .map((line) => line.replace(/\s+#.*$/, "").trim())
      .filter(Boolean);
    expect(commands.map((command) => command.split(" ")[0])).toEqual([
      "bash",
      'TRUSTED_PROXIES="10.0.0.5',
    ]);
    for (const command of commands) await stack.shell(localize(command));

    // The balancer's name (example.com in the block) is served over HTTP, which the
    // balancer would reach; HTTPS is its job now. Another Host is refused.
    const visit = await stack.shell(
      `${curl([NAME])} -s -X POST http://${NAME}:${httpPort}/api/visits`,
    );
    expect(JSON.parse(visit)).toEqual({ count: expect.any(Number) });
    const other = await stack.shell(
      `${curl([NAME])} -s -o /dev/null -w '%{http_code}' -H 'Host: other.example' http://${NAME}:${httpPort}/`,
    );
    expect(other).toBe("421");
    // Nothing listens on the HTTPS port any more.
    await expect(stack.shell(`${curl([NAME])} -s https://${NAME}:${httpsPort}/`)).rejects.toThrow();
  });
});
