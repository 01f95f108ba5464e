// Reading `nginx -T`: the files it dumps and the directives that matter to the tests.

/** The files `nginx -T` dumped, by path ("# configuration file <path>:" headers). */
export function dumpedFiles(dump: string): Map<string, string> {
  const parts = dump.split(/^# configuration file (.+):$/m);
  const files = new Map<string, string>();
  for (let i = 1; i + 1 < parts.length; i += 2) files.set(parts[i] ?? "", parts[i + 1] ?? "");
  return files;
}

/** The configuration without comments, and with quoted strings emptied (their braces). */
export function stripped(config: string): string {
  return config.replace(/#.*$/gm, "").replace(/'[^']*'|"[^"]*"/g, '""');
}

/** The error_page directives outside any block of a file: status -> URI. */
export function topLevelErrorPages(config: string): Map<number, string> {
  const pages = new Map<number, string>();
  let depth = 0;
  let statement = "";
  for (const char of stripped(config)) {
    if (char === "{" || char === "}") {
      depth += char === "{" ? 1 : -1;
      statement = "";
    } else if (char === ";") {
      const [directive, ...args] = statement.trim().split(/\s+/);
      const uri = args.pop() ?? "";
      if (depth === 0 && directive === "error_page") {
        for (const code of args) pages.set(Number(code), uri);
      }
      statement = "";
    } else {
      statement += char;
    }
  }
  return pages;
}

/** The files a config includes outside any block. */
export function topLevelIncludes(config: string): string[] {
  let depth = 0;
  const includes: string[] = [];
  for (const statement of stripped(config).split(/(?<=[;{}])/)) {
    const include = /^\s*include\s+(\S+);$/.exec(statement)?.[1];
    if (depth === 0 && include) includes.push(include);
    if (statement.endsWith("{")) depth++;
    if (statement.endsWith("}")) depth--;
  }
  return includes;
}

/** The status each exact-match location answers with `return`: URI -> status. */
export function returnedStatuses(config: string): Map<string, number> {
  const statuses = new Map<string, number>();
  for (const [, uri = "", body = ""] of stripped(config).matchAll(
    /location\s*=\s*(\S+)\s*\{([^{}]*)\}/g,
  )) {
    const status = /\breturn\s+(\d{3})\b/.exec(body)?.[1];
    if (status) statuses.set(uri, Number(status));
  }
  return statuses;
}
