import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "./support/compose.ts";

// docs/TUTORIAL-MAP.md points at line ranges of the real configuration, each row naming
// the key it demonstrates. A range is anchored by that key: it must stand on the range's
// first line, so a line added or removed above a row fails here instead of misleading a
// reader. Containment alone would not do: a wide range still holds its key when it has
// slid by a few lines.

const map = readFileSync(join(REPO_ROOT, "docs/TUTORIAL-MAP.md"), "utf8");
const rows = [...map.matchAll(/^\| (.+?) \| `([^`:]+):(\d+)(?:-(\d+))?` \| `(.+?)` \|/gm)].map(
  ([, concept, path, start, end, key]) => ({
    concept: concept ?? "",
    path: path ?? "",
    start: Number(start),
    end: Number(end ?? start),
    key: key ?? "",
  }),
);

describe("docs/TUTORIAL-MAP.md", () => {
  it("references the configuration", () => {
    expect(rows.length).toBeGreaterThanOrEqual(25);
  });

  it.each(rows)("$concept → $path:$start-$end starts at `$key`", ({ path, start, end, key }) => {
    const file = join(REPO_ROOT, path);
    expect(existsSync(file), `${path} exists`).toBe(true);
    const lines = readFileSync(file, "utf8").split("\n");
    expect(start).toBeGreaterThanOrEqual(1);
    expect(end).toBeGreaterThanOrEqual(start);
    expect(end).toBeLessThanOrEqual(lines.length);
    // Where the key stands now (the occurrence nearest the range), for the message.
    const now = lines
      .map((line, index) => (line.includes(key) ? index + 1 : 0))
      .filter(Boolean)
      .sort((a, b) => Math.abs(a - start) - Math.abs(b - start))[0];
    expect(lines[start - 1], `${path}:${start} holds \`${key}\` (now at line ${now})`).toContain(
      key,
    );
  });
});
