import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { type Browser, chromium } from "playwright-core";

// Debian's Chromium (apt-get install chromium), never a downloaded browser build.
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const ARTIFACTS = join(import.meta.dirname, "../../test-results");

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      // No calls home: this machine's network is closed, and tests must not depend on it.
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

export async function artifactPath(name: string): Promise<string> {
  const path = join(ARTIFACTS, name);
  await mkdir(dirname(path), { recursive: true });
  return path;
}
