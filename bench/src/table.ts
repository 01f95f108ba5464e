export interface Table {
  columns: string[];
  /** "r" right-aligns a column (numbers); default left. */
  align?: ("l" | "r")[];
  rows: string[][];
}

const width = (text: string) => [...text].length;

/** A plain-text table with aligned columns, for the terminal. */
export function renderText(table: Table): string {
  const widths = table.columns.map((column, i) =>
    Math.max(width(column), ...table.rows.map((row) => width(row[i] ?? ""))),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => {
        const pad = " ".repeat((widths[i] ?? 0) - width(cell));
        return table.align?.[i] === "r" ? pad + cell : cell + pad;
      })
      .join("  ")
      .trimEnd();
  return [
    line(table.columns),
    widths.map((w) => "-".repeat(w)).join("  "),
    ...table.rows.map((row) => line(table.columns.map((_, i) => row[i] ?? ""))),
  ].join("\n");
}

/** The same table in GitHub Markdown. */
export function renderMarkdown(table: Table): string {
  const escapeCell = (cell: string) => cell.replaceAll("|", "\\|");
  const line = (cells: string[]) => `| ${cells.map(escapeCell).join(" | ")} |`;
  const rule = table.columns.map((_, i) => (table.align?.[i] === "r" ? "---:" : "---"));
  return [
    line(table.columns),
    `| ${rule.join(" | ")} |`,
    ...table.rows.map((row) => line(table.columns.map((_, i) => row[i] ?? ""))),
  ].join("\n");
}

export const ms = (value: number) =>
  value >= 10_000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`;
export const seconds = (value: number) => `${value.toFixed(1)} s`;
/** Decimal megabytes, as `docker image ls` shows them. */
export const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
export const int = (value: number) => Math.round(value).toLocaleString("en-US");
export const pct = (value: number) => `${Math.round(value * 100)} %`;
