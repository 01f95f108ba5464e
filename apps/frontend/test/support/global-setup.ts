// Made once per `vitest run` and shared by every test file (which run one at a time, so
// no two of them read the fakes' recorded requests at once): the frontend image, built
// from this folder, a network with a fake backend and counter, and a frontend with the
// image's defaults on it (support/fixture.ts).
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";
import { createNetwork, docker, RUN_ID, removeCreated, runFrontend } from "./docker.ts";
import { BACKEND_ROUTES, COUNTER_ROUTES, type FakeAddress, startFake } from "./fakes.ts";

const NGINX_IMAGE = process.env.NGINX_IMAGE || "nginx:1.30";
const CONTEXT = fileURLToPath(new URL("../..", import.meta.url));

declare module "vitest" {
  export interface ProvidedContext {
    frontendImage: string;
    network: string;
    frontend: { url: string; container: string };
    backend: FakeAddress;
    counter: FakeAddress;
  }
}

export default async function setup(project: TestProject) {
  const image = `app-frontend-test:${RUN_ID}`;
  const teardown = async () => {
    await removeCreated();
    await docker("image", "rm", "--force", image).catch(() => {});
  };
  try {
    const network = await createNetwork("net");
    const [backend, counter] = await Promise.all([
      startFake({ network, alias: "backend", port: 3001, name: "backend", routes: BACKEND_ROUTES }),
      startFake({ network, alias: "counter", port: 3002, name: "counter", routes: COUNTER_ROUTES }),
      docker("build", "--quiet", "--build-arg", `NGINX_IMAGE=${NGINX_IMAGE}`, "-t", image, CONTEXT),
    ]);
    const frontend = await runFrontend(image, "shared", { network });
    const address = ({ container, name, base }: FakeAddress) => ({ container, name, base });
    project.provide("frontendImage", image);
    project.provide("network", network);
    project.provide("frontend", frontend);
    project.provide("backend", address(backend));
    project.provide("counter", address(counter));
  } catch (error) {
    await teardown();
    throw error;
  }
  return teardown;
}
