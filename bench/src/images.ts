import { run } from "./proc.ts";
import type { Stack } from "./stack.ts";

export interface ImageSize {
  service: string;
  image: string;
  bytes: number;
  base: string;
  baseBytes: number;
  /** Bytes the image adds over its base image. */
  added: number;
}

async function imageBytes(ref: string): Promise<number> {
  const { stdout } = await run("docker", ["image", "inspect", "--format", "{{.Size}}", ref]);
  return Number(stdout.trim());
}

/**
 * Total size of each image the stack builds, and what it adds over the image its final
 * stage starts FROM (the Node image for backend and counter, Nginx for the frontend),
 * named as the compose files pass it: NODE_IMAGE / NGINX_IMAGE or their defaults.
 */
export async function imageSizes(stack: Stack): Promise<ImageSize[]> {
  const bases: Record<string, string> = {
    backend: process.env.NODE_IMAGE || "node:24-trixie-slim",
    counter: process.env.NODE_IMAGE || "node:24-trixie-slim",
    frontend: process.env.NGINX_IMAGE || "nginx:1.30",
  };
  const sizes: ImageSize[] = [];
  for (const [service, image] of await stack.builtImages()) {
    const base = bases[service];
    if (!base) continue;
    const bytes = await imageBytes(image);
    const baseBytes = await imageBytes(base);
    sizes.push({ service, image, bytes, base, baseBytes, added: bytes - baseBytes });
  }
  return sizes.sort((a, b) => a.service.localeCompare(b.service));
}
