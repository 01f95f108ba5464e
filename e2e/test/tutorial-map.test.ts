import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "./support/compose.ts";

// docs/TUTORIAL-MAP.md points at line ranges of the real configuration. This test
// keeps it honest: every referenced file exists, every range lies inside it, and
// the text the map quotes ("Look for") still stands in those lines.

const map = readFileSync(join(REPO_ROOT, "docs/TUTORIAL-MAP.md"), "utf8");
const references = [...map.matchAll(/^\| (.+?) \| `([^`:]+):(\d+)-(\d+)` \| `(.+?)` \|/gm)].map(
  ([, concept, path, start, end, quoted]) => ({
    concept: concept ?? "",
    path: path ?? "",
    start: Number(start),
    end: Number(end),
    quoted: quoted ?? "",
  }),
);

describe("docs/TUTORIAL-MAP.md", () => {
  it("references the configuration", () => {
    expect(references.length).toBeGreaterThanOrEqual(25);
  });

  it.each(references)("$concept → $path:$start-$end", ({ path, start, end, quoted }) => {
    const file = join(REPO_ROOT, path);
    expect(existsSync(file), `${path} exists`).toBe(true);
    const lines = readFileSync(file, "utf8").split("\n");
    expect(start).toBeGreaterThanOrEqual(1);
    expect(end).toBeGreaterThanOrEqual(start);
    expect(end).toBeLessThanOrEqual(lines.length);
    expect(lines.slice(start - 1, end).join("\n")).toContain(quoted);
  });
});
