// The README's quick start as data, so a test can run it and compare what it prints with
// what the README shows: an example that drifts from the code fails the test instead of
// misleading a reader.

export interface Example {
  /** The command after `$ `, as the reader types it. */
  command: string;
  /** The lines the README shows below it. */
  output: string;
}

export interface QuickStart {
  /**
   * The lines of its ```sh blocks, comments dropped. `git clone` lines are left out: the
   * test's copy of the repository stands for the clone.
   */
  setup: string[];
  /** The `$ command` lines of its ```console blocks, each with its output. */
  examples: Example[];
  /** The page's text after its own visit, as the README quotes it. */
  pageText: string;
}

/** The text of the `## heading` section, up to the next `## `. */
export function section(markdown: string, heading: string): string {
  const start = markdown.indexOf(`\n## ${heading}\n`);
  if (start === -1) throw new Error(`no "## ${heading}" section`);
  const end = markdown.indexOf("\n## ", start + 1);
  return markdown.slice(start, end === -1 ? undefined : end);
}

/** Fenced code blocks: their language and text. */
export function codeBlocks(markdown: string): { lang: string; text: string }[] {
  return [...markdown.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map(([, lang, text]) => ({
    lang: lang ?? "",
    text: text ?? "",
  }));
}

/**
 * A section's commands: the lines of its ```sh blocks, comments dropped, and the
 * `$ command` lines of its ```console blocks, each with the output shown below it.
 */
export function parseSection(
  markdown: string,
  heading: string,
): { setup: string[]; examples: Example[] } {
  const setup: string[] = [];
  const examples: Example[] = [];
  for (const block of codeBlocks(section(markdown, heading))) {
    const lines = block.text.replace(/\n$/, "").split("\n");
    if (block.lang === "sh") {
      for (const line of lines) {
        // A shell comment: `#` after a space, outside the quoted text these lines hold none of.
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

export function parseQuickStart(readme: string): QuickStart {
  const text = section(readme, "Quick start");
  const { setup, examples } = parseSection(readme, "Quick start");
  // Quoted in prose, where a line break may fall inside the quote.
  const quote = text.replace(/\s+/g, " ").match(/"(This page has been visited \d+ times)"/);
  if (!quote?.[1]) throw new Error('no quoted "This page has been visited N times"');
  return {
    setup: setup.filter((command) => !command.startsWith("git clone ")),
    examples,
    pageText: quote[1],
  };
}

/**
 * What may differ between two runs and still be the same output: times, container names
 * (hosts), how long a container has been up, and the spacing of table columns.
 */
export function normalize(output: string): string {
  return output
    .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z/g, "<time>")
    .replace(/"servedByHost":"[^"]*"/g, '"servedByHost":"<host>"')
    .replace(/\bUp [^(\n]+\(/g, "Up <time> (")
    .split("\n")
    .map((line) => line.replace(/[ \t]+/g, " ").trim())
    .join("\n")
    .trim();
}
