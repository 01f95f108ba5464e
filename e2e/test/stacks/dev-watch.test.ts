import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { eventually } from "@app/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ComposeProject, REPO_ROOT } from "../support/compose.ts";

// The development stack as on Docker Desktop: docker-compose.watch.yml on top of the
// override replaces the source bind mounts with Compose Watch `sync` rules. The stack is
// started with `up --build --wait`, then `docker compose watch --no-up` runs beside it
// (as `up --build --watch` would, but without a foreground `up`), from a throwaway copy
// of the repository whose files the tests edit.
const FILES = ["docker-compose.yml", "docker-compose.override.yml", "docker-compose.watch.yml"];
const stack = new ComposeProject({ files: FILES, copyRepo: true });
let url: string;
let watch: ChildProcess | undefined;
let watchOutput = "";
/** Images a rebuild by Compose Watch replaced: untagged, so destroy() does not see them. */
const replacedImages: string[] = [];
const run = promisify(execFile);

/** `docker compose … watch --no-up` for the project, resolved once Compose watches. */
function startWatch(): Promise<void> {
  const child = spawn(
    "docker",
    ["compose", "-p", stack.name, ...FILES.flatMap((file) => ["-f", file]), "watch", "--no-up"],
    {
      cwd: stack.directory,
      // The same environment as ComposeProject.compose(), so a rebuild by Compose Watch
      // recreates a container with the configuration the stack was started with.
      env: stack.commandEnvironment(),
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  watch = child;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`watch not enabled:\n${watchOutput}`)), 60_000);
    const collect = (chunk: string) => {
      watchOutput += chunk;
      if (watchOutput.includes("Watch enabled")) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.setEncoding("utf8").on("data", collect);
    child.stderr.setEncoding("utf8").on("data", collect);
    child.once("close", (code) => {
      clearTimeout(timer);
      reject(new Error(`docker compose watch exited with ${code}:\n${watchOutput}`));
    });
  });
}

async function stopWatch(): Promise<void> {
  const child = watch;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const closed = new Promise((resolve) => child.once("close", resolve));
  child.kill("SIGTERM");
  await closed;
}

/** eventually(), with what Compose Watch printed when the check never passes. */
async function watched<T>(check: () => Promise<T>, timeoutMs: number): Promise<T> {
  try {
    return await eventually(check, timeoutMs);
  } catch (error) {
    throw new Error(`${(error as Error).message}\n--- docker compose watch ---\n${watchOutput}`);
  }
}

beforeAll(async () => {
  await stack.prepare();
  await stack.up();
  url = await stack.url("frontend", 8080);
  await startWatch();
});
afterAll(async () => {
  await stopWatch();
  await stack.destroy();
  for (const id of replacedImages) {
    // Only if nothing names it now (an identical build of another project may share it).
    const tags = await run("docker", ["image", "inspect", "--format", "{{len .RepoTags}}", id])
      .then(({ stdout }) => stdout.trim())
      .catch(() => "gone");
    if (tags === "0") await run("docker", ["image", "rm", id]).catch(() => {});
  }
});

interface Rule {
  path: string;
  action: string;
  target?: string;
  ignore?: string[];
}
interface Service {
  volumes?: { type: string; source?: string; target: string }[];
  develop?: { watch?: Rule[] };
}

async function resolvedServices(files: string[]): Promise<Record<string, Service>> {
  const project = new ComposeProject({ files });
  return JSON.parse(await project.compose(["config", "--format", "json"])).services;
}

const SOURCES: Record<string, Record<string, string>> = {
  frontend: { "apps/frontend/public": "/usr/share/nginx/html" },
  backend: {
    "apps/backend/src": "/repo/apps/backend/src",
    "packages/config/src": "/repo/packages/config/src",
    "packages/server/src": "/repo/packages/server/src",
  },
  counter: {
    "apps/counter/src": "/repo/apps/counter/src",
    "packages/config/src": "/repo/packages/config/src",
    "packages/server/src": "/repo/packages/server/src",
  },
};
/** A path of `docker compose config` (absolute), relative to the repository again. */
const inRepo = (path = "") => relative(REPO_ROOT, path);

describe("compose files for Compose Watch", () => {
  it("base + override + watch: no bind mount of the sources, sync rules instead", async () => {
    const services = await resolvedServices(FILES);
    for (const [name, folders] of Object.entries(SOURCES)) {
      const service = services[name] ?? {};
      expect(service.volumes?.filter((v) => v.type === "bind") ?? [], name).toEqual([]);
      const sync = (service.develop?.watch ?? []).filter((rule) => rule.action === "sync");
      expect(
        Object.fromEntries(sync.map((rule) => [inRepo(rule.path), rule.target])),
        name,
      ).toEqual(folders);
      if (name !== "frontend") {
        for (const rule of sync) expect(rule.ignore, rule.path).toContain("node_modules/");
      }
    }
  });

  it("base + override: bind mounts as before, and rebuild rules for the dependencies", async () => {
    const services = await resolvedServices(FILES.slice(0, 2));
    for (const [name, folders] of Object.entries(SOURCES)) {
      const service = services[name] ?? {};
      const binds = service.volumes?.filter((v) => v.type === "bind") ?? [];
      expect(Object.fromEntries(binds.map((v) => [inRepo(v.source), v.target])), name).toEqual(
        folders,
      );
      // A sync rule next to a bind mount of the same folder would be skipped by Compose.
      const actions = (service.develop?.watch ?? []).map((rule) => rule.action);
      expect(actions, name).not.toContain("sync");
    }
    for (const app of ["backend", "counter"]) {
      const rebuilds = (services[app]?.develop?.watch ?? [])
        .filter((rule) => rule.action === "rebuild")
        .map((rule) => inRepo(rule.path));
      expect(rebuilds.sort(), app).toEqual(
        [
          `apps/${app}/Dockerfile`,
          `apps/${app}/package.json`,
          "packages/config/package.json",
          "packages/server/package.json",
          "pnpm-lock.yaml",
        ].sort(),
      );
    }
  });
});

describe("development stack with Compose Watch", () => {
  it("runs with no bind mounts in the containers", async () => {
    const ids = (await stack.compose(["ps", "--quiet", "frontend", "backend", "counter"]))
      .trim()
      .split("\n");
    expect(ids).toHaveLength(3);
    const { stdout } = await run("docker", ["inspect", "--format", "{{json .Mounts}}", ...ids]);
    for (const line of stdout.trim().split("\n")) {
      const mounts = JSON.parse(line) as { Type: string }[];
      expect(mounts.filter((m) => m.Type === "bind")).toEqual([]);
    }
  });

  it("gives node the synced source folders in the dev image, nothing else", async () => {
    const owners = await stack.compose([
      "exec",
      "-T",
      "backend",
      "stat",
      "-c",
      "%U %n",
      "/repo/apps/backend/src",
      "/repo/apps/backend/src/app.ts",
      "/repo/packages/config/src",
      "/repo/packages/server/src",
      "/repo/node_modules",
      "/repo/apps/backend/package.json",
    ]);
    expect(owners.trim().split("\n")).toEqual([
      "node /repo/apps/backend/src",
      "node /repo/apps/backend/src/app.ts",
      "node /repo/packages/config/src",
      "node /repo/packages/server/src",
      "root /repo/node_modules",
      "root /repo/apps/backend/package.json",
    ]);
  });

  it("syncs backend edits: tsx reloads and Nginx serves each within 20 s", async () => {
    const source = join(stack.directory, "apps/backend/src/app.ts");
    const original = await readFile(source, "utf8");
    const served = async (message: string) => {
      const started = Date.now();
      await watched(async () => {
        const body = (await (await fetch(`${url}/api/data`)).json()) as { message: string };
        expect(body.message).toBe(message);
      }, 20_000);
      return Date.now() - started;
    };
    // Several saves in a row: a sync replaces the file in the container, and a watcher
    // of the replaced file alone would see only the first one or two.
    const times: number[] = [];
    for (let edit = 1; edit <= 4; edit++) {
      await writeFile(source, original.replace("managed by Docker Compose!", `synced ${edit}!`));
      times.push(await served(`Hello from Backend API synced ${edit}!`));
    }
    console.info(`backend edits served through Compose Watch after ${times.join(", ")} ms`);
    await writeFile(source, original);
    await served("Hello from Backend API managed by Docker Compose!");
  });

  it("syncs an edit of packages/server/src into both Node services, which reload", async () => {
    const source = join(stack.directory, "packages/server/src/errors.ts");
    const original = await readFile(source, "utf8");
    await writeFile(source, `${original}// synced by watch\n`);
    for (const service of ["backend", "counter"]) {
      await watched(async () => {
        const copy = await stack.compose([
          "exec",
          "-T",
          service,
          "cat",
          "/repo/packages/server/src/errors.ts",
        ]);
        expect(copy, service).toContain("// synced by watch");
        const logs = await stack.compose(["logs", "--no-color", "--since", "2m", service]);
        expect(logs, service).toMatch(
          /\[tsx\] \w+ in \S*packages\/server\/src\/errors\.ts Restarting/,
        );
      }, 20_000);
    }
    await writeFile(source, original);
  });

  it("syncs an edit of apps/frontend/public: Nginx serves it", async () => {
    const page = join(stack.directory, "apps/frontend/public/index.html");
    const original = await readFile(page, "utf8");
    await writeFile(page, original.replace("</body>", "<p>synced</p></body>"));
    const started = Date.now();
    await watched(
      async () => expect(await (await fetch(`${url}/`)).text()).toContain("<p>synced</p>"),
      20_000,
    );
    console.info(`frontend edit served through Compose Watch after ${Date.now() - started} ms`);
    await writeFile(page, original);
  });

  it("rebuilds and replaces the backend when its package.json changes", async () => {
    const before = (await stack.compose(["ps", "--quiet", "backend"])).trim();
    const { stdout: image } = await run("docker", ["inspect", "--format", "{{.Image}}", before]);
    replacedImages.push(image.trim());
    const manifest = join(stack.directory, "apps/backend/package.json");
    const original = await readFile(manifest, "utf8");
    // A change no install depends on, but a new manifest all the same: a new image.
    await writeFile(manifest, original.replace('"private": true,', '"private": true,\n  "x": 1,'));
    const started = Date.now();
    const host = await watched(async () => {
      const after = (await stack.compose(["ps", "--quiet", "backend"])).trim();
      expect(after).not.toBe(before);
      const body = (await (await fetch(`${url}/api/data`)).json()) as { servedByHost: string };
      expect(after.startsWith(body.servedByHost)).toBe(true);
      return body.servedByHost;
    }, 240_000);
    console.info(`backend rebuilt and replaced (${host}) after ${Date.now() - started} ms`);
    expect(watchOutput).toMatch(/rebuild/i);
  }, 300_000);
});
