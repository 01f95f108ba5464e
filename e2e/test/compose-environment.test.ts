import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { ComposeProject } from "./support/compose.ts";

// The stacks under test see the repository, not the contributor's machine: what they
// exported in their shell and what their .env holds stay out (support/compose.ts).

const run = promisify(execFile);

// What a contributor may well have exported for their own stack.
const CONTRIBUTOR = {
  COMPOSE_PROFILES: "tools",
  COMPOSE_FILE: "docker-compose.yml:docker-compose.monitoring.yml",
  IMAGE_PREFIX: "registry.example/me",
  PUBLIC_HOST: "me.example",
  RATE_LIMIT: "off",
};
const saved = new Map(Object.keys(CONTRIBUTOR).map((name) => [name, process.env[name]]));
afterEach(() => {
  for (const [name, value] of saved) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});

interface Config {
  services: Record<string, { image?: string; environment?: Record<string, string> }>;
}

describe("the environment of a stack under test", () => {
  it("leaves out the variables a contributor exported", async () => {
    Object.assign(process.env, CONTRIBUTOR);
    const project = new ComposeProject({ files: ["docker-compose.yml"] });
    const config = JSON.parse(await project.compose(["config", "--format", "json"])) as Config;
    // No profile's service, no monitoring file's service: only the base file's.
    expect(Object.keys(config.services).sort()).toEqual([
      "backend",
      "cache",
      "counter",
      "db",
      "db-setup",
      "frontend",
      "migrate",
    ]);
    expect(config.services.counter?.image).toBe(`visit-counter/counter:${project.name}`);
    expect(config.services.frontend?.environment).toMatchObject({
      PUBLIC_HOST: "localhost",
      RATE_LIMIT: "on",
    });
    // The machine's own variables pass: the Docker client still finds its daemon and
    // the base images their names (stand-ins on a machine without a registry).
    const env = project.commandEnvironment();
    expect(env.PATH).toBe(process.env.PATH);
    for (const name of ["COMPOSE_PROFILES", "COMPOSE_FILE", "IMAGE_PREFIX", "PUBLIC_HOST"])
      expect(env).not.toHaveProperty(name);
    if (process.env.POSTGRES_IMAGE) expect(env.POSTGRES_IMAGE).toBe(process.env.POSTGRES_IMAGE);
  });

  it("tells Compose not to read the repository's .env, and Compose obeys", async () => {
    const fromRoot = new ComposeProject({ files: ["docker-compose.yml"] });
    expect(fromRoot.commandEnvironment()).toMatchObject({ COMPOSE_DISABLE_ENV_FILE: "true" });
    // A copy has only the .env its test writes there: that one counts.
    const copy = await new ComposeProject({
      files: ["docker-compose.yml"],
      copyRepo: true,
    }).prepare();
    try {
      expect(copy.commandEnvironment()).not.toHaveProperty("COMPOSE_DISABLE_ENV_FILE");
    } finally {
      await rm(copy.directory, { recursive: true, force: true });
    }
    // The variable does what its name says in this Compose.
    const directory = await mkdtemp(join(tmpdir(), "dotenv-"));
    try {
      await writeFile(
        join(directory, "compose.yml"),
        // biome-ignore lint/suspicious/noTemplateCurlyInString: Compose's interpolation, not JS's
        "services:\n  probe:\n    image: probe\n    environment:\n      FROM_DOTENV: ${FROM_DOTENV:-unset}\n",
      );
      await writeFile(join(directory, ".env"), "FROM_DOTENV=contributor\n");
      const config = async (env: Record<string, string>) =>
        JSON.parse(
          (await run("docker", ["compose", "config", "--format", "json"], { cwd: directory, env }))
            .stdout,
        ) as Config;
      const path = { PATH: process.env.PATH ?? "" };
      expect((await config(path)).services.probe?.environment?.FROM_DOTENV).toBe("contributor");
      expect(
        (await config({ ...path, COMPOSE_DISABLE_ENV_FILE: "true" })).services.probe?.environment
          ?.FROM_DOTENV,
      ).toBe("unset");
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });
});
