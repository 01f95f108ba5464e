// `pnpm chaos`: the production stack (2 counter replicas) under a steady, bounded
// stream of POST /api/visits on 127.0.0.1 while its parts are killed and restarted
// in turn; then the acknowledged visits are compared with PostgreSQL's count, bad
// input is sent through Nginx, and every container is checked for crashes. Exits
// non-zero on any violation. Everything it starts is removed at the end.
import { randomUUID } from "node:crypto";
import { flags, positive, wholeNumber } from "./args.ts";
import { sendBadInput } from "./bad-input.ts";
import { runMain } from "./cleanup.ts";
import { log } from "./log.ts";
import { describeMachine, machineLines } from "./machine.ts";
import { run, sleep } from "./proc.ts";
import { writeReportSection } from "./report.ts";
import { type ContainerInfo, copyRepo, freePort, PROD_FILES, runName, Stack } from "./stack.ts";
import { int, ms, renderMarkdown, renderText, type Table } from "./table.ts";

const USAGE = `Usage: pnpm chaos [-- options]

  --rate N            visits per second of the POST /api/visits stream (default: 100)
  --in-flight N       concurrent visits at most (default: 4)
  --phase S           seconds per phase (default: 7)
  --timeout-ms N      time for one visit, retries included (default: 5000)
  --retries N         retries of a visit after a refused/reset connection or a
                      502/503/504, with the same Idempotency-Key, after 0.1, 0.2,
                      0.4 … s (default: 5; 0: none)
  --ref REF           measure a commit (git archive REF) instead of the working tree
  --write-report      also write the tables into docs/PERFORMANCE.md
  -h, --help          this text

Phases: steady, cache killed+restarted, db killed+restarted, one counter replica
SIGKILLed+restored, Nginx restarted, steady. Then: acknowledged visits vs PostgreSQL's
count, bad input through Nginx, container crash check. Exits 1 on any violation.`;

interface Sample {
  phase: number;
  /** Seconds after the stream started. */
  at: number;
  /** Nginx's X-Request-Id: the same id is in the counter's log line for the request. */
  requestId?: string;
  latencyMs: number;
  /** HTTP status, or 0 for a client-side error (reset, refused, timeout). */
  status: number;
  error?: string;
  count?: number;
  source?: string;
  /** HTTP attempts this visit took (retries carry the same Idempotency-Key). */
  attempts: number;
  /** The answer was a replay: an earlier attempt had been counted. */
  replayed?: boolean;
}

interface Phase {
  name: string;
  /** Which services the phase restarts on purpose (not a crash). */
  restarts: string[];
  action: () => Promise<string>;
}

/** One HTTP attempt of a visit; status 0 for a client-side error (reset, refused, timeout). */
async function attemptVisit(
  url: string,
  key: string,
  timeoutMs: number,
): Promise<Omit<Sample, "phase" | "at" | "latencyMs" | "attempts">> {
  try {
    const response = await fetch(`${url}/api/visits`, {
      method: "POST",
      headers: { "Idempotency-Key": key },
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await response.text();
    const requestId = response.headers.get("x-request-id") ?? undefined;
    if (!response.ok) return { status: response.status, requestId };
    let count: unknown;
    try {
      count = (JSON.parse(text) as { count?: unknown }).count;
    } catch {
      // An answer, but a broken one: reported, not retried.
    }
    if (typeof count !== "number") return { status: response.status, requestId, error: "no count" };
    return {
      status: response.status,
      requestId,
      count,
      source: response.headers.get("x-counter-source") ?? "?",
      replayed: response.headers.get("idempotent-replayed") === "true",
    };
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code;
    const name = error instanceof Error ? error.name : "Error";
    return { status: 0, error: name === "TimeoutError" ? "timeout" : (cause ?? name) };
  }
}

// Worth another attempt: no answer at all (refused, reset) or the proxy's "no
// upstream" answers. A retry carries the same Idempotency-Key, so a visit that was
// counted before its answer got lost is answered with its number, not counted twice.
const retryable = (attempt: { status: number; error?: string }) =>
  (attempt.status === 0 && attempt.error !== "timeout") || [502, 503, 504].includes(attempt.status);

/** One visit as a careful client makes it: a fresh key, retried within `timeoutMs` in all. */
async function postVisit(
  url: () => string,
  timeoutMs: number,
  retries: number,
): Promise<Omit<Sample, "phase" | "at">> {
  const started = performance.now();
  const left = () => timeoutMs - (performance.now() - started);
  const key = randomUUID();
  for (let attempts = 1; ; attempts++) {
    const attempt = await attemptVisit(url(), key, Math.max(1, Math.round(left())));
    const backoffMs = 100 * 2 ** (attempts - 1); // 0.1, 0.2, 0.4 … s
    // Another attempt only if it still has time to get an answer (100 ms at least).
    const done =
      attempt.count !== undefined ||
      !retryable(attempt) ||
      attempts > retries ||
      left() < backoffMs + 100;
    if (done) return { ...attempt, attempts, latencyMs: performance.now() - started };
    await sleep(backoffMs);
  }
}

/** A steady, rate-limited stream with at most `inFlight` requests open, until stop(). */
function startStream(options: {
  /** Read per request: a restarted Nginx gets a new random host port. */
  url: () => string;
  rate: number;
  inFlight: number;
  timeoutMs: number;
  retries: number;
  maxRequests: number;
  phase: () => number;
}) {
  const samples: Sample[] = [];
  let issued = 0;
  let stopped = false;
  const t0 = performance.now();
  const worker = async () => {
    for (;;) {
      const i = issued++;
      if (stopped || i >= options.maxRequests) return;
      const due = t0 + (i * 1000) / options.rate;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      if (stopped) return;
      const phase = options.phase();
      const at = (performance.now() - t0) / 1000;
      samples.push({
        phase,
        at,
        ...(await postVisit(options.url, options.timeoutMs, options.retries)),
      });
    }
  };
  const workers = Array.from({ length: options.inFlight }, worker);
  return {
    samples,
    async stop(): Promise<Sample[]> {
      stopped = true;
      await Promise.all(workers);
      return samples;
    },
  };
}

async function waitHealthyContainer(id: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { stdout } = await run("docker", ["inspect", "--format", "{{.State.Health.Status}}", id]);
    if (stdout.trim() === "healthy") return;
    if (Date.now() > deadline) throw new Error(`container ${id} not healthy in ${timeoutMs} ms`);
    await sleep(200);
  }
}

function phases(stack: Stack, url: () => string, onNewUrl: (url: string) => void): Phase[] {
  const killAndStart = (service: string, downMs: number) => async () => {
    const [id] = await stack.containerIds(service);
    if (!id) throw new Error(`no ${service} container`);
    const t = performance.now();
    await run("docker", ["kill", "--signal", "KILL", id]);
    await sleep(downMs);
    await run("docker", ["start", id]);
    await waitHealthyContainer(id);
    return `SIGKILL, down ${ms(downMs)}, healthy again ${ms(performance.now() - t)} after the kill`;
  };
  return [
    { name: "steady (baseline)", restarts: [], action: async () => "none" },
    { name: "cache killed + restarted", restarts: ["cache"], action: killAndStart("cache", 2_000) },
    { name: "db killed + restarted", restarts: ["db"], action: killAndStart("db", 2_000) },
    {
      name: "one counter replica SIGKILLed",
      restarts: ["counter"],
      action: async () => {
        const [id] = await stack.containerIds("counter");
        if (!id) throw new Error("no counter container");
        const t = performance.now();
        await run("docker", ["kill", "--signal", "KILL", id]);
        await sleep(1_000);
        const up = await stack.compose([
          "up",
          "--detach",
          "--no-build",
          "--wait",
          "--wait-timeout",
          "60",
        ]);
        return `SIGKILL of ${id.slice(0, 12)} (one of 2), down 1 s, then \`up --wait\` (${ms(up.ms)}): healthy ${ms(performance.now() - t)} after the kill`;
      },
    },
    {
      name: "Nginx restarted",
      restarts: ["frontend"],
      action: async () => {
        const t = performance.now();
        await stack.compose(["restart", "frontend"]);
        const newUrl = await stack.url();
        if (newUrl !== url()) onNewUrl(newUrl);
        await stack.waitHealthy("frontend");
        return `\`docker compose restart frontend\`, healthy ${ms(performance.now() - t)} later`;
      },
    },
    { name: "steady (recovery)", restarts: [], action: async () => "none" },
  ];
}

async function postgresCount(stack: Stack): Promise<number> {
  const user = process.env.POSTGRES_USER || "counter";
  const db = process.env.POSTGRES_DB || "counter";
  const { stdout } = await stack.compose([
    "exec",
    "-T",
    "db",
    "psql",
    "-U",
    user,
    "-d",
    db,
    "-tAc",
    "select count from visit_counts where id = 'visits'",
  ]);
  return Number(stdout.trim());
}

async function currentCount(url: string): Promise<number> {
  const response = await fetch(`${url}/api/visits`, { signal: AbortSignal.timeout(5_000) });
  return ((await response.json()) as { count: number }).count;
}

const percentile = (values: number[], p: number) => {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
};

await runMain(async () => {
  const values = flags(USAGE, {
    rate: { type: "string", default: "100" },
    "in-flight": { type: "string", default: "4" },
    phase: { type: "string", default: "7" },
    "timeout-ms": { type: "string", default: "5000" },
    retries: { type: "string", default: "5" },
    ref: { type: "string" },
    "write-report": { type: "boolean", default: false },
  });
  const ref = typeof values.ref === "string" ? values.ref : undefined;
  const rate = positive("rate", values.rate, USAGE);
  const inFlight = Math.round(positive("in-flight", values["in-flight"], USAGE));
  const phaseMs = positive("phase", values.phase, USAGE) * 1000;
  const timeoutMs = positive("timeout-ms", values["timeout-ms"], USAGE);
  const retries = wholeNumber("retries", values.retries, USAGE);

  const machine = await describeMachine("chaos-", ref);
  const name = runName("chaos");
  log(`copying the repository (project ${name})`);
  const directory = await copyRepo(name, ref);
  // A fixed host port, so clients find Nginx again after its restart, as in production.
  const stack = new Stack({ name, directory, files: PROD_FILES, frontendPort: await freePort() });
  log("production stack: up --build --wait…");
  try {
    await stack.up(["--build"]);
  } catch (error) {
    console.error(await stack.logs());
    throw error;
  }
  let url = await stack.url();
  const before = new Map((await stack.containers()).map((c) => [c.id, c]));
  const initial = await currentCount(url);
  log(`stack up at ${url}; count before the stream: ${initial}`);

  const plan = phases(
    stack,
    () => url,
    (newUrl) => {
      log(`Nginx now published at ${newUrl}`);
      url = newUrl;
    },
  );
  let current = 0;
  const maxRequests = Math.ceil((rate * (plan.length * phaseMs + 120_000)) / 1000);
  const stream = startStream({
    url: () => url,
    rate,
    inFlight,
    timeoutMs,
    retries,
    maxRequests,
    phase: () => current,
  });
  const actions: string[] = [];
  const durations: number[] = [];
  for (const [index, phase] of plan.entries()) {
    current = index;
    const t = performance.now();
    log(`phase ${index + 1}/${plan.length}: ${phase.name}`);
    actions.push(await phase.action());
    const rest = phaseMs - (performance.now() - t);
    if (rest > 0) await sleep(rest);
    durations.push(performance.now() - t);
  }
  const samples = await stream.stop();
  log(`stream stopped: ${samples.length} visits`);

  // Write-behind: PostgreSQL catches up within a few flush intervals (backoff after an outage).
  let finalPg = await postgresCount(stack);
  let finalHot = await currentCount(url);
  const settleDeadline = Date.now() + 15_000;
  let stableReads = 0;
  while (Date.now() < settleDeadline && stableReads < 3) {
    await sleep(500);
    const pg = await postgresCount(stack);
    const hot = await currentCount(url);
    stableReads = pg === finalPg && hot === finalHot && pg >= hot ? stableReads + 1 : 0;
    finalPg = pg;
    finalHot = hot;
  }
  log(`final count: PostgreSQL ${finalPg}, Redis ${finalHot}`);

  // Exactness.
  const acked = samples.filter((s) => s.count !== undefined);
  const numbers = acked.map((s) => s.count as number);
  const seen = new Map<number, number>();
  for (const n of numbers) seen.set(n, (seen.get(n) ?? 0) + 1);
  const duplicates = [...seen].filter(([, times]) => times > 1).map(([n]) => n);
  const delta = finalPg - initial;
  const aboveFinal = numbers.filter((n) => n > finalPg).length;
  // A number counted but never acknowledged (a "phantom") is charged to the phase of
  // the next acknowledged number.
  const byNumber = [...acked].sort((a, b) => (a.count as number) - (b.count as number));
  const phantoms = plan.map(() => 0);
  let next = 0;
  for (let n = initial + 1; n <= finalPg; n++) {
    if (seen.has(n)) continue;
    while (next < byNumber.length && (byNumber[next]?.count as number) < n) next++;
    const owner = byNumber[next] ?? byNumber[byNumber.length - 1];
    phantoms[owner?.phase ?? plan.length - 1] =
      (phantoms[owner?.phase ?? plan.length - 1] ?? 0) + 1;
  }

  const phaseTable: Table = {
    columns: [
      "Phase",
      "s",
      "visits",
      "acknowledged",
      "failed",
      "failures",
      "retried",
      "replayed",
      "max latency",
      "p99",
      "via PostgreSQL",
      "phantoms",
      "action",
    ],
    align: ["l", "r", "r", "r", "r", "l", "r", "r", "r", "r", "r", "r", "l"],
    rows: plan.map((phase, index) => {
      const mine = samples.filter((s) => s.phase === index);
      const ok = mine.filter((s) => s.count !== undefined);
      const failed = mine.filter((s) => s.count === undefined);
      const reasons = new Map<string, number>();
      for (const s of failed) {
        const reason = s.status ? String(s.status) : (s.error ?? "error");
        reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
      }
      const latencies = mine.map((s) => s.latencyMs);
      return [
        `${index + 1}. ${phase.name}`,
        ((durations[index] ?? 0) / 1000).toFixed(1),
        int(mine.length),
        int(ok.length),
        int(failed.length),
        [...reasons].map(([r, n]) => `${r}×${n}`).join(", ") || "—",
        int(mine.filter((s) => s.attempts > 1).length),
        int(ok.filter((s) => s.replayed).length),
        ms(Math.max(0, ...latencies)),
        ms(percentile(latencies, 99)),
        int(ok.filter((s) => s.source === "postgres").length),
        int(phantoms[index] ?? 0),
        actions[index] ?? "",
      ];
    }),
  };
  const totalFailed = samples.length - acked.length;
  phaseTable.rows.push([
    "total",
    (durations.reduce((a, b) => a + b, 0) / 1000).toFixed(1),
    int(samples.length),
    int(acked.length),
    int(totalFailed),
    "",
    int(samples.filter((s) => s.attempts > 1).length),
    int(acked.filter((s) => s.replayed).length),
    ms(Math.max(0, ...samples.map((s) => s.latencyMs))),
    ms(
      percentile(
        samples.map((s) => s.latencyMs),
        99,
      ),
    ),
    int(acked.filter((s) => s.source === "postgres").length),
    int(phantoms.reduce((a, b) => a + b, 0)),
    "",
  ]);

  const totalPhantoms = phantoms.reduce((a, b) => a + b, 0);
  const exact =
    acked.length === delta && totalPhantoms === 0 && duplicates.length === 0 && aboveFinal === 0;
  // Each duplicate: who answered it, when, from which store, and the counter's log line.
  const duplicateLines: string[] = [];
  if (duplicates.length > 0) {
    const logs = (await stack.compose(["logs", "--no-color", "counter"], { allowFailure: true }))
      .stdout;
    for (const n of duplicates.slice(0, 10)) {
      for (const s of acked.filter((x) => x.count === n)) {
        const line = s.requestId ? logs.split("\n").find((l) => l.includes(s.requestId ?? "")) : "";
        const host = /"hostname":"([^"]+)"/.exec(line ?? "")?.[1] ?? "?";
        duplicateLines.push(
          `number ${n}: phase ${s.phase + 1} (${plan[s.phase]?.name}), ${s.at.toFixed(2)} s into the stream, from ${s.source}, counter container ${host}, request ${s.requestId ?? "?"}`,
        );
      }
    }
  }
  const exactTable: Table = {
    columns: ["Check", "Value", "Verdict"],
    rows: [
      ["count before the stream", int(initial), ""],
      ["final PostgreSQL count", int(finalPg), ""],
      [
        "final Redis count (GET /api/visits)",
        int(finalHot),
        finalHot === finalPg ? "ok" : "DIFFERS",
      ],
      ["visits counted during the run (PostgreSQL − before)", int(delta), ""],
      [
        "acknowledged visits (2xx with a number)",
        int(acked.length),
        acked.length === delta ? "equal" : "NOT EQUAL",
      ],
      [
        "numbers counted but never acknowledged (phantoms)",
        int(totalPhantoms),
        totalPhantoms === 0 ? "ok" : "MISMATCH",
      ],
      [
        "duplicate numbers acknowledged",
        int(duplicates.length),
        duplicates.length === 0 ? "ok" : `FAIL: ${duplicates.slice(0, 5).join(", ")}`,
      ],
      [
        "acknowledged numbers above the final count (lost)",
        int(aboveFinal),
        aboveFinal === 0 ? "ok" : "FAIL",
      ],
    ],
  };

  log("bad input through Nginx…");
  const bad = await sendBadInput(url);
  const badTable: Table = {
    columns: ["Request", "status", "body", "Verdict"],
    align: ["l", "r", "l", "l"],
    rows: bad.map((b) => [
      b.label,
      b.status ? String(b.status) : "—",
      b.kind,
      b.ok ? "ok" : `FAIL: ${b.note}`,
    ]),
  };
  // The stack must still serve after the bad input.
  const stillServing = (await fetch(`${url}/api/data`).catch(() => undefined))?.ok === true;

  await sleep(1_000);
  const after = await stack.containers();
  const restartedOnPurpose = new Set(plan.flatMap((p) => p.restarts));
  const crashes: string[] = [];
  const containerRows = after
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((c: ContainerInfo) => {
      const then = before.get(c.id);
      const restarted = then !== undefined && then.startedAt !== c.startedAt;
      const problems = [
        !c.running && "not running",
        c.restartCount > 0 && `restarted by its policy ${c.restartCount}× (a crash)`,
        c.oomKilled && "OOM-killed",
        restarted && !restartedOnPurpose.has(c.service) && "restarted, not by the drill",
        !then && "new container",
      ].filter(Boolean) as string[];
      if (problems.length > 0) crashes.push(`${c.name}: ${problems.join(", ")}`);
      return [
        c.name.replace(`${name}-`, ""),
        c.running ? "running" : `exited ${c.exitCode}`,
        c.health,
        String(c.restartCount),
        restarted ? "yes (drill)" : "no",
        problems.length ? `FAIL: ${problems.join(", ")}` : "ok",
      ];
    });
  const containerTable: Table = {
    columns: ["Container", "state", "health", "restart count", "restarted", "Verdict"],
    rows: containerRows,
  };

  const badOk = bad.every((b) => b.ok);
  // A run whose stream never got through proves nothing: the steady phases (first and
  // last) must answer every visit.
  const steady = samples.filter((s) => s.phase === 0 || s.phase === plan.length - 1);
  const steadyFailed = steady.filter((s) => s.count === undefined).length;
  const streamOk = steady.length > 0 && steadyFailed === 0;
  const verdicts = [
    `Stream: ${streamOk ? "PASS" : "FAIL"} — ${int(steady.length - steadyFailed)}/${int(steady.length)} visits answered in the steady phases, ${int(samples.length - acked.length)} failed in all.`,
    `Exactness: ${exact ? "PASS" : "FAIL"} — ${int(acked.length)} acknowledged, ${int(delta)} counted in PostgreSQL${exact ? "" : `, ${int(totalPhantoms)} phantom(s), ${duplicates.length} duplicate(s), ${aboveFinal} lost`}.`,
    `Bad input: ${badOk ? "PASS" : "FAIL"} — ${bad.filter((b) => b.ok).length}/${bad.length} answered 4xx with a JSON or plain-text body; 5xx: ${bad.filter((b) => b.status >= 500).length}; stack still serving: ${stillServing ? "yes" : "NO"}.`,
    `Containers: ${crashes.length === 0 ? "PASS — no crash, no unplanned restart" : `FAIL — ${crashes.join("; ")}`}.`,
  ];
  const heading = [
    ...machineLines(machine),
    `Command: pnpm chaos -- ${ref ? `--ref ${ref} ` : ""}--rate ${rate} --in-flight ${inFlight} --phase ${phaseMs / 1000} --timeout-ms ${timeoutMs} --retries ${retries}`,
    `Stream: POST /api/visits through Nginx on 127.0.0.1, ${rate} req/s, at most ${inFlight} in flight, ${ms(timeoutMs)} per visit; each visit carries its own Idempotency-Key and is retried (at most ${retries} times, same key) after a refused or reset connection or a 502/503/504; production stack (2 counter and 2 backend replicas).`,
  ];
  const duplicateText = duplicateLines.length
    ? ["Duplicates acknowledged:", ...duplicateLines.map((l) => `- ${l}`), ""]
    : [];
  console.log(
    [
      "",
      ...heading,
      "",
      renderText(phaseTable),
      "",
      renderText(exactTable),
      "",
      ...duplicateText,
      renderText(badTable),
      "",
      renderText(containerTable),
      "",
      ...verdicts,
      "",
    ].join("\n"),
  );
  if (values["write-report"]) {
    const markdown = [
      ...heading.map((line) => `- ${line.replace(/^Command: (.*)$/, "Command: `$1`")}`),
      "",
      renderMarkdown(phaseTable),
      "",
      renderMarkdown(exactTable),
      "",
      ...duplicateText,
      renderMarkdown(badTable),
      "",
      renderMarkdown(containerTable),
      "",
      ...verdicts.map((v) => `- ${v}`),
    ].join("\n");
    log(`wrote ${await writeReportSection("chaos", markdown)}`);
  }
  return streamOk && exact && badOk && stillServing && crashes.length === 0 ? 0 : 1;
});
