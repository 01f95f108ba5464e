// `pnpm chaos`: the production stack (2 counter replicas) under a steady, bounded
// stream of visits and reads through Nginx on 127.0.0.1 (@app/visit-history's
// visitors: half of the visits with an Idempotency-Key and retried, half without)
// while its parts are killed, frozen and restarted in turn; then the history is
// checked (@app/visit-history's checker: unique numbers, PostgreSQL's count =
// acknowledged + phantoms, replays, real-time order, the read guarantee), bad input is
// sent through Nginx, and every container is checked for crashes. Exits non-zero on
// any violation. Everything it starts is removed at the end.
import { freePort } from "@app/test-support";
import {
  acknowledgement,
  checkHistory,
  now,
  startVisitors,
  summarize,
  type VisitRecord,
  type Window,
} from "@app/visit-history";
import { flags, positive, wholeNumber } from "./args.ts";
import { sendBadInput } from "./bad-input.ts";
import { runMain } from "./cleanup.ts";
import { log } from "./log.ts";
import { describeMachine, machineLines } from "./machine.ts";
import { run, sleep } from "./proc.ts";
import { writeReport } from "./report.ts";
import { type ContainerInfo, copyRepo, measuredProdFiles, runName, Stack } from "./stack.ts";
import { int, ms, renderMarkdown, renderText, type Table } from "./table.ts";

const USAGE = `Usage: pnpm chaos [-- options]

  --rate N            requests per second of the stream, visits and reads (default: 100)
  --in-flight N       concurrent requests at most (default: 4)
  --phase S           seconds per phase (default: 7)
  --timeout-ms N      time for one visit, retries included (default: 5000)
  --retries N         retries of a keyed visit after no answer or a 502/503/504, with
                      the same Idempotency-Key, after 0.05, 0.1, 0.2 … s (default: 6)
  --keyed-share F     share of visits with an Idempotency-Key, 0…1 (default: 0.5)
  --ref REF           measure a commit (git archive REF) instead of the working tree
  --write-report      also write the report to bench/results/chaos.md, and its
                      verdicts into docs/PERFORMANCE.md
  -h, --help          this text

Phases: steady, cache SIGKILLed+restarted, cache frozen (docker pause), cache emptied
(FLUSHALL), db SIGKILLed+restarted, db frozen, one counter replica SIGKILLed+restored,
Nginx restarted, steady. Then: the history check, bad input through Nginx, container
crash check. Exits 1 on any violation.`;

/** The counter's CACHE_TTL_SECONDS in the stack (its default). */
const CACHE_TTL_MS = 5_000;

interface Phase {
  name: string;
  /** Which services the phase restarts on purpose (not a crash). */
  restarts: string[];
  action: () => Promise<string>;
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
  const container = async (service: string) => {
    const [id] = await stack.containerIds(service);
    if (!id) throw new Error(`no ${service} container`);
    return id;
  };
  const killAndStart = (service: string, downMs: number) => async () => {
    const id = await container(service);
    const t = performance.now();
    await run("docker", ["kill", "--signal", "KILL", id]);
    await sleep(downMs);
    await run("docker", ["start", id]);
    await waitHealthyContainer(id);
    return `SIGKILL, down ${ms(downMs)}, healthy again ${ms(performance.now() - t)} after the kill`;
  };
  const freeze = (service: string, frozenMs: number) => async () => {
    const id = await container(service);
    await run("docker", ["pause", id]);
    await sleep(frozenMs);
    await run("docker", ["unpause", id]);
    return `docker pause for ${ms(frozenMs)} (connections stay open, nothing answers)`;
  };
  return [
    { name: "steady (baseline)", restarts: [], action: async () => "none" },
    // A restarted cache is covered by the counter's refresh after it reconnects.
    { name: "cache killed + restarted", restarts: ["cache"], action: killAndStart("cache", 2_000) },
    { name: "cache frozen", restarts: [], action: freeze("cache", 3_000) },
    {
      name: "cache emptied",
      restarts: [],
      action: async () => {
        // redis-cli takes the production password from REDISCLI_AUTH (none in development).
        const flush =
          'REDISCLI_AUTH="$(cat /run/secrets/redis_password 2>/dev/null)" redis-cli FLUSHALL';
        await stack.compose(["exec", "-T", "cache", "sh", "-c", flush]);
        return "redis-cli FLUSHALL";
      },
    },
    {
      name: "db killed + restarted",
      restarts: ["db"],
      action: killAndStart("db", 2_000),
    },
    { name: "db frozen", restarts: [], action: freeze("db", 3_000) },
    {
      name: "one counter replica SIGKILLed",
      restarts: ["counter"],
      // Started again as it was (`docker start`, as its restart policy would), not with
      // `up --wait`, which waits for every service, the database just frozen included.
      action: killAndStart("counter", 1_000),
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

/** The numbers PostgreSQL holds for the counter's Idempotency-Keys. */
async function durableKeys(stack: Stack): Promise<Map<string, number>> {
  const { stdout } = await stack.compose([
    ...["exec", "-T", "db", "psql", "-U", process.env.POSTGRES_USER || "counter"],
    ...["-d", process.env.POSTGRES_DB || "counter", "-tA", "-F", " "],
    ...["-c", "select key, count from visit_requests where counter_id = 'visits'"],
  ]);
  return new Map(
    stdout
      .split("\n")
      .filter(Boolean)
      .map((line) => {
        const [stored = "", count = ""] = line.split(" ");
        // Nginx stores a client's key as c:<address>:<key> (its default.conf.template);
        // client keys hold no ':'.
        return [stored.slice(stored.lastIndexOf(":") + 1), Number(count)] as const;
      }),
  );
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

const percentile = (values: number[], p: number) => {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
};

/** From the first attempt's start to the last attempt's end. */
const latency = (visit: VisitRecord) =>
  (visit.attempts.at(-1)?.end ?? 0) - (visit.attempts[0]?.start ?? 0);

await runMain(async () => {
  const values = flags(USAGE, {
    rate: { type: "string", default: "100" },
    "in-flight": { type: "string", default: "4" },
    phase: { type: "string", default: "7" },
    "timeout-ms": { type: "string", default: "5000" },
    retries: { type: "string", default: "6" },
    "keyed-share": { type: "string", default: "0.5" },
    ref: { type: "string" },
    "write-report": { type: "boolean", default: false },
  });
  const ref = typeof values.ref === "string" ? values.ref : undefined;
  const rate = positive("rate", values.rate, USAGE);
  const inFlight = Math.round(positive("in-flight", values["in-flight"], USAGE));
  const phaseMs = positive("phase", values.phase, USAGE) * 1000;
  const timeoutMs = positive("timeout-ms", values["timeout-ms"], USAGE);
  const retries = wholeNumber("retries", values.retries, USAGE);
  const keyedShare = Number(values["keyed-share"]);
  if (!(keyedShare >= 0 && keyedShare <= 1)) {
    console.error(`--keyed-share must be between 0 and 1\n\n${USAGE}`);
    process.exit(2);
  }

  const machine = await describeMachine("chaos-", ref);
  const name = runName("chaos");
  log(`copying the repository (project ${name})`);
  const directory = await copyRepo(name, ref);
  // A fixed host port, so clients find Nginx again after its restart, as in production.
  const stack = new Stack({
    name,
    directory,
    files: measuredProdFiles(directory),
    frontendPort: await freePort(),
  });
  log("production stack: up --build --wait…");
  try {
    await stack.up(["--build"]);
  } catch (error) {
    console.error(await stack.logs());
    throw error;
  }
  let url = await stack.url();
  const before = new Map((await stack.containers()).map((c) => [c.id, c]));
  const initial = await postgresCount(stack);
  log(`stack up at ${url}; count before the stream: ${initial}`);

  const plan = phases(
    stack,
    () => url,
    (newUrl) => {
      log(`Nginx now published at ${newUrl}`);
      url = newUrl;
    },
  );
  const visitors = startVisitors({
    targets: () => [url],
    path: "/api/visits",
    clients: inFlight,
    rate,
    keyedShare,
    readShare: 0.2,
    echoShare: 0.1,
    retries,
    timeoutMs,
  });
  const bounds: Window[] = [];
  const actions: string[] = [];
  for (const [index, phase] of plan.entries()) {
    const from = now();
    log(`phase ${index + 1}/${plan.length}: ${phase.name}`);
    actions.push(await phase.action());
    const rest = phaseMs - (now() - from);
    if (rest > 0) await sleep(rest);
    bounds.push({ from, to: now(), label: phase.name });
  }
  const history = await visitors.stop();
  log(`stream stopped: ${history.visits.length} visits, ${history.reads.length} reads`);
  // Every number comes from a committed transaction: no settling, the count is final.
  const finalCount = await postgresCount(stack);
  const result = checkHistory(history, {
    initialCount: initial,
    finalCount,
    cacheTtlMs: CACHE_TTL_MS,
    // Nginx sends a visit again to another replica by itself, with the same key: the
    // client then sees its first attempt answered as a replay (docs/COUNTER.md).
    proxyRetries: true,
    durableKeys: await durableKeys(stack),
  });
  log(`history: ${summarize(result)}`);

  const phaseOf = (visit: VisitRecord) => {
    const start = visit.attempts[0]?.start ?? 0;
    const index = bounds.findIndex((b) => start >= b.from && start < b.to);
    return index === -1 ? plan.length - 1 : index;
  };
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
      "reads (cache misses)",
      "action",
    ],
    align: ["l", "r", "r", "r", "r", "l", "r", "r", "r", "r", "r", "l"],
    rows: [...plan.entries(), [plan.length, undefined] as const].map(([index, phase]) => {
      const mine =
        phase === undefined ? history.visits : history.visits.filter((v) => phaseOf(v) === index);
      const reads =
        phase === undefined
          ? history.reads
          : history.reads.filter((r) => {
              const bound = bounds[index];
              return bound !== undefined && r.start >= bound.from && r.start < bound.to;
            });
      const acked = mine.flatMap((v) => acknowledgement(v) ?? []);
      const failed = mine.filter((v) => acknowledgement(v) === undefined);
      const reasons = new Map<string, number>();
      for (const visit of failed) {
        const last = visit.attempts.at(-1);
        const reason = last?.status ? String(last.status) : (last?.error ?? "error");
        reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
      }
      const latencies = mine.map(latency);
      const seconds =
        phase === undefined
          ? bounds.reduce((sum, b) => sum + (b.to - b.from), 0)
          : (bounds[index]?.to ?? 0) - (bounds[index]?.from ?? 0);
      return [
        phase === undefined ? "total" : `${index + 1}. ${phase.name}`,
        (seconds / 1000).toFixed(1),
        int(mine.length),
        int(acked.length),
        int(failed.length),
        phase === undefined ? "" : [...reasons].map(([r, n]) => `${r}×${n}`).join(", ") || "—",
        int(mine.filter((v) => v.attempts.length > 1).length),
        int(acked.filter((a) => a.replayed).length),
        ms(Math.max(0, ...latencies)),
        ms(percentile(latencies, 99)),
        `${int(reads.length)} (${int(reads.filter((r) => r.cache === "miss").length)})`,
        phase === undefined ? "" : (actions[index] ?? ""),
      ];
    }),
  };

  const checkTable: Table = {
    columns: ["Check", "Value", "Verdict"],
    rows: [
      ["count before the stream (PostgreSQL)", int(initial), ""],
      ["count after the stream (PostgreSQL)", int(finalCount), ""],
      ["visits (attempts)", `${int(result.visits)} (${int(result.attempts)})`, ""],
      ["acknowledged visits", int(result.acknowledged), ""],
      [
        "phantoms: counted, never acknowledged",
        int(result.phantoms),
        `≤ ${int(result.unanswered)} unanswered attempts`,
      ],
      ["keyed visits sent again, number replayed", int(result.replaysChecked), ""],
      [
        "reads checked (cache hits, misses)",
        `${int(result.readsChecked)} (${int(result.cacheHits)}, ${int(result.cacheMisses)})`,
        "",
      ],
      ["violations of (a)–(e)", int(result.violations.length), result.ok ? "none" : "FAIL"],
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
      // A one-shot job (db-setup) had done its work, exit code 0, before the stream began.
      const finishedJob = !c.running && c.exitCode === 0 && then?.running === false;
      const problems = [
        !c.running && !finishedJob && "not running",
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
  const steady = history.visits.filter((v) => [0, plan.length - 1].includes(phaseOf(v)));
  const steadyFailed = steady.filter((v) => acknowledgement(v) === undefined).length;
  const streamOk = steady.length > 0 && steadyFailed === 0;
  const verdicts = [
    `Stream: ${streamOk ? "PASS" : "FAIL"} — ${int(steady.length - steadyFailed)}/${int(steady.length)} visits answered in the steady phases, ${int(result.visits - result.acknowledged)} without a number in all.`,
    `History: ${result.ok ? "PASS" : "FAIL"} — ${summarize(result)}.`,
    `Bad input: ${badOk ? "PASS" : "FAIL"} — ${bad.filter((b) => b.ok).length}/${bad.length} answered 4xx with a JSON or plain-text body; 5xx: ${bad.filter((b) => b.status >= 500).length}; stack still serving: ${stillServing ? "yes" : "NO"}.`,
    `Containers: ${crashes.length === 0 ? "PASS — no crash, no unplanned restart" : `FAIL — ${crashes.join("; ")}`}.`,
  ];
  const heading = [
    ...machineLines(machine),
    `Command: pnpm chaos -- ${ref ? `--ref ${ref} ` : ""}--rate ${rate} --in-flight ${inFlight} --phase ${phaseMs / 1000} --timeout-ms ${timeoutMs} --retries ${retries} --keyed-share ${keyedShare}`,
    `Stream: POST and GET /api/visits through Nginx on 127.0.0.1, ${rate} req/s (a fifth of them reads), at most ${inFlight} in flight; ${Math.round(keyedShare * 100)} % of the visits carry an Idempotency-Key and are retried (at most ${retries} times, same key, within ${ms(timeoutMs)}) after no answer or a 502/503/504, the others are sent once; production stack (2 counter and 2 backend replicas).`,
  ];
  const violationText = result.violations.length
    ? ["Violations:", ...result.violations.map((l) => `- ${l}`), ""]
    : [];
  console.log(
    [
      "",
      ...heading,
      "",
      renderText(phaseTable),
      "",
      renderText(checkTable),
      "",
      ...violationText,
      renderText(badTable),
      "",
      renderText(containerTable),
      "",
      ...verdicts,
      "",
    ].join("\n"),
  );
  if (values["write-report"]) {
    const list = (lines: string[]) =>
      lines.map((line) => `- ${line.replace(/^Command: (.*)$/, "Command: `$1`")}`);
    const report = [
      ...list(heading),
      "",
      renderMarkdown(phaseTable),
      "",
      renderMarkdown(checkTable),
      "",
      ...violationText,
      renderMarkdown(badTable),
      "",
      renderMarkdown(containerTable),
      "",
      ...list(verdicts),
    ].join("\n");
    const summary = [
      ...list(heading.filter((line) => /^(Date|Code): /.test(line))),
      ...list(verdicts),
      "",
      "The phases, the checks, the bad requests and the containers: [bench/results/chaos.md](../bench/results/chaos.md).",
    ].join("\n");
    log(`wrote ${(await writeReport("chaos", report, summary)).join(", ")}`);
  }
  return streamOk && result.ok && badOk && stillServing && crashes.length === 0 ? 0 : 1;
});
