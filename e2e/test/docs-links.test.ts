import { readdir, readFile, stat } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "./support/compose.ts";

// Every relative link of the README and docs/ leads somewhere: the file exists, a
// #heading anchor names a heading of it (as GitHub makes them), a #L12 or #L12-L20
// anchor lies within it. A file moved, a heading renamed or a file shortened breaks a
// link here first, not for a reader.

/** GitHub's anchor for a heading: the text without formatting, lower case, punctuation dropped. */
function slug(heading: string): string {
  return heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1") // a link: its text
    .replace(/<[^>]+>/g, "") // inline HTML
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "")
    .replace(/ /g, "-");
}

/** The anchors a Markdown file offers: its headings' slugs (repeats numbered) and HTML ids. */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const [, text] of withoutFences(markdown).matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = slug(text ?? "");
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    result.add(count === 0 ? base : `${base}-${count}`);
  }
  for (const [, id] of markdown.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) result.add(id ?? "");
  return result;
}

/** Fenced blocks blanked out (lines kept): a `#` line there is no heading. */
function withoutFences(markdown: string): string {
  return markdown.replace(/^(```|~~~)[\s\S]*?^\1$/gm, (block) => block.replace(/[^\n]/g, " "));
}

/** Inline code blanked out too: a link there is text. */
function withoutCode(markdown: string): string {
  return withoutFences(markdown).replace(/`[^`\n]+`/g, (code) => " ".repeat(code.length));
}

interface Link {
  file: string;
  line: number;
  target: string;
}

function links(file: string, markdown: string): Link[] {
  const text = withoutCode(markdown);
  const found: Link[] = [];
  for (const match of text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
    const line = text.slice(0, match.index).split("\n").length;
    found.push({ file, line, target: match[1] ?? "" });
  }
  return found;
}

/** Why a relative link is broken, or undefined when it resolves. */
async function problem(link: Link): Promise<string | undefined> {
  const [path = "", anchor] = link.target.split("#", 2);
  const absolute =
    path === ""
      ? join(REPO_ROOT, link.file)
      : resolve(REPO_ROOT, dirname(link.file), decodeURI(path));
  if (relative(REPO_ROOT, absolute).startsWith("..")) return "leads outside the repository";
  const info = await stat(absolute).catch(() => undefined);
  if (!info) return "no such file";
  if (anchor === undefined) return undefined;
  if (!info.isFile()) return "an anchor on a directory";
  const content = await readFile(absolute, "utf8");
  const lines = anchor.match(/^L(\d+)(?:-L(\d+))?$/);
  if (lines) {
    const count = content.replace(/\n$/, "").split("\n").length;
    const from = Number(lines[1]);
    const to = Number(lines[2] ?? lines[1]);
    if (from < 1 || to < from || to > count) return `lines ${from}-${to} of a ${count}-line file`;
    return undefined;
  }
  if (!absolute.endsWith(".md")) return "a heading anchor on a file that is not Markdown";
  return anchors(content).has(decodeURIComponent(anchor)) ? undefined : "no such heading";
}

async function documents(): Promise<string[]> {
  const docs = (await readdir(join(REPO_ROOT, "docs"))).filter((name) => name.endsWith(".md"));
  return ["README.md", ...docs.sort().map((name) => `docs/${name}`)];
}

describe("links of the README and docs/", async () => {
  const files = await documents();

  it.each(files)("%s: every relative link and anchor resolves", async (file) => {
    const all = links(file, await readFile(join(REPO_ROOT, file), "utf8"));
    const relativeLinks = all.filter((link) => !/^[a-z][a-z0-9+.-]*:/i.test(link.target));
    const broken: string[] = [];
    for (const link of relativeLinks) {
      const why = await problem(link);
      if (why) broken.push(`${link.file}:${link.line} ${link.target}: ${why}`);
    }
    expect(broken).toEqual([]);
  });

  it("finds the links it checks, anchors included", async () => {
    const all = (
      await Promise.all(
        files.map(async (file) => links(file, await readFile(join(REPO_ROOT, file), "utf8"))),
      )
    ).flat();
    expect(all.filter((link) => link.target.includes("#L")).length).toBeGreaterThanOrEqual(3);
    expect(all.filter((link) => /\.md#[a-z]/.test(link.target)).length).toBeGreaterThan(3);
  });

  it("makes anchors as GitHub does", () => {
    expect(slug("The database password changed after the first run")).toBe(
      "the-database-password-changed-after-the-first-run",
    );
    expect(slug("Secrets as files: `NAME_FILE`")).toBe("secrets-as-files-name_file");
    expect(slug("Compose-level variables (`.env` or your shell)")).toBe(
      "compose-level-variables-env-or-your-shell",
    );
    expect(slug("Development and production compared")).toBe("development-and-production-compared");
  });
});
