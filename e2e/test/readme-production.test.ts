import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "./support/compose.ts";
import { loopbackClient, productionStack } from "./support/production.ts";
import { codeBlocks, normalize, section } from "./support/readme.ts";

// The README's production block, copied from the README and run verbatim in a clean copy
// of the repository, as on a first server: its placeholder host (example.com) replaced by a
// name that is not localhost, which the client resolves to 127.0.0.1 (`curl --resolve`,
// loopbackClient), and BACKUP_DIR set in .env, where the script and Compose must both read
// it. Its examples must print what the README shows. The ports are free ones
// (FRONTEND_PORT, FRONTEND_HTTPS_PORT in the environment, as .env would move them).

const NAME = "counter.example.test";
const { stack, httpPort, httpsPort } = await productionStack();
let readme: { setup: string[]; examples: { command: string; output: string }[] };
let backupDir: string;

/** The README's Production section: its ```sh lines (comments dropped) and ```console examples. */
function parseProduction(markdown: string) {
  const setup: string[] = [];
  const examples: { command: string; output: string }[] = [];
  for (const block of codeBlocks(section(markdown, "Production"))) {
    const lines = block.text.replace(/\n$/, "").split("\n");
    if (block.lang === "sh") {
      for (const line of lines) {
        const command = line.replace(/\s+#.*$/, "").trim();
        if (command !== "") setup.push(command);
      }
    } else if (block.lang === "console") {
      for (const line of lines) {
        if (line.startsWith("$ ")) examples.push({ command: line.slice(2), output: "" });
        else {
          const last = examples.at(-1);
          if (!last) throw new Error(`output before any command: ${line}`);
          last.output += `${line}\n`;
        }
      }
    }
  }
  return { setup, examples };
}

/** The README's example.com, on its default ports, as this run's name on its free ports. */
const localize = (text: string) =>
  text
    .replaceAll("example.com:8443", `${NAME}:${httpsPort}`)
    .replaceAll("example.com:8080", `${NAME}:${httpPort}`)
    .replaceAll("example.com", NAME);

beforeAll(async () => {
  readme = parseProduction(await readFile(join(REPO_ROOT, "README.md"), "utf8"));
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
