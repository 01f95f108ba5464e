import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { type Browser, chromium } from "playwright-core";

// Debian's Chromium (apt-get install chromium), never a downloaded browser build.
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const ARTIFACTS = join(import.meta.dirname, "../../test-results");

/**
 * `trustSpkiHashes`: certificates whose key (or whose chain's key: a test CA's) has one
 * of these SHA-256 hashes are trusted, as if the CA were installed.
 */
export async function launchChromium(
  options: { trustSpkiHashes?: string[] } = {},
): Promise<Browser> {
  const trust = options.trustSpkiHashes ?? [];
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      ...(trust.length > 0 ? [`--ignore-certificate-errors-spki-list=${trust.join(",")}`] : []),
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
