// `pnpm bench`: one run, one table. Builds the production images in a throwaway copy
// of the repository (cold, then warm after a one-line change), measures their sizes,
// times `up` to healthy, drives HTTP load through Nginx with autocannon (rounds of
// interleaved rows, medians reported; optionally against a baseline commit's stack in
// the same run), reads what each request costs each service in CPU, scales the counter,
// and times the development stack's hot reload. Everything it starts is removed at the
// end, also on an error or Ctrl-C. See docs/PERFORMANCE.md.
import { existsSync } from "node:fs";
import { appendFile } from "node:fs/promises";
import { join } from "node:path";
import { flags, positive } from "./args.ts";
import { type BuildTiming, dependencySteps, describeStep, timedBuild } from "./build.ts";
import { runMain } from "./cleanup.ts";
import { type IdleWait, ON_PATH, waitForQuiet } from "./cpu.ts";
import { type ImageSize, imageSizes } from "./images.ts";
import { type LoadResult, runLoad } from "./load.ts";
import { log } from "./log.ts";
import { describeMachine, machineLines } from "./machine.ts";
import { run } from "./proc.ts";
import { measureReloads, measureWatchReloads, WATCH_FILES } from "./reload.ts";
import { writeReport } from "./report.ts";
import { copyRepo, DEV_FILES, measuredProdFiles, REPO_ROOT, runName, Stack } from "./stack.ts";
import { describeTimeline, type StartupTiming, timedUp } from "./startup.ts";
import { int, mb, ms, pct, renderMarkdown, renderText, seconds, type Table } from "./table.ts";

const USAGE = `Usage: pnpm bench [-- options]

  --rounds N          runs of every load row, interleaved row by row; the tables give
                      the medians (default: 3)
  --duration S        measured seconds per load row (default: 10)
  --warmup S          unrecorded seconds of load before each row (default: 2)
  --connections N     concurrent connections per load row (default: 50)
  --baseline REF      also measure a commit (git archive REF) in the same run: a second
                      production stack, the rows alternating between the two round by
                      round, the idle one paused (docker compose pause)
  --ref REF           measure a commit instead of the working tree
  --only load         only the load rows, the CPU table and the scale rows (no build,
                      image size, start-up or hot-reload timings)
  --reloads N         hot-reload edits to time on the dev stack (default: 3)
  --quiet-wait S      before each measurement, wait up to S seconds for the machine to be
                      quiet (< 0.3 busy cores for 3 s); 0 = never wait (default: 30)
  --write-report      also write the report to bench/results/bench.md, and its load
                      rows and CPU table into docs/PERFORMANCE.md
  -h, --help          this text

Needs Docker with Compose v2 and the base images (NODE_IMAGE, NGINX_IMAGE,
POSTGRES_IMAGE, REDIS_IMAGE or their defaults). Runs about 15 minutes on 2 cores.`;

const TARGETS = {
  visitsShareOfData: 0.85,
  /** A cache hit costs about what a trivial route does. */
  readsShareOfData: 0.9,
  /** The cache is off the visit's path: it costs a visit (almost) nothing. */
  visitsWithCacheShareOfWithout: 0.95,
  visitsP99OverData: 1.5,
  /** Whole-stack CPU of a visit against a data request's. */
  visitCpuOverData: 1.4,
  /** GET /api/data against the baseline's, when there is one (issue 19's lighter kit). */
  dataOverBaseline: 1.3,
  outageP99Ms: 100,
  imageAddedBytes: 20e6,
  warmRebuildS: 15,
  upHealthyS: 10,
  reloadMs: 2_000,
};

const verdict = (ok: boolean) => (ok ? "met" : "MISSED");

interface Row {
  key: string;
  label: string;
  method: "GET" | "POST";
  path: string;
  /** A fresh Idempotency-Key per request, as the page sends (else Nginx adds its own). */
  keys?: boolean;
  cacheStopped?: boolean;
}

const ROWS: Row[] = [
  { key: "hello", label: "hello-world GET /api/healthz", method: "GET", path: "/api/healthz" },
  { key: "data", label: "GET /api/data", method: "GET", path: "/api/data" },
  { key: "visits", label: "POST /api/visits", method: "POST", path: "/api/visits" },
  { key: "reads", label: "GET /api/visits (cache hits)", method: "GET", path: "/api/visits" },
  {
    key: "keyed",
    label: "POST /api/visits with Idempotency-Key",
    method: "POST",
    path: "/api/visits",
    keys: true,
  },
  {
    key: "outage",
    label: "POST /api/visits, cache stopped",
    method: "POST",
    path: "/api/visits",
    cacheStopped: true,
  },
  {
    key: "outageKeyed",
    label: "… with Idempotency-Key, cache stopped",
    method: "POST",
    path: "/api/visits",
    keys: true,
    cacheStopped: true,
  },
];
const VISITS = ROWS[2] as Row;

/** The non-load measurements, skipped with --only load. */
interface Timings {
  cold: BuildTiming;
  warm: BuildTiming;
  sizes: ImageSize[];
  upFresh: StartupTiming;
  upExisting: StartupTiming;
  stackName: string;
  reloads: number[];
  watchReloads: number[];
}

interface Measurements {
  /** Busy cores of the machine just before each measurement (other work running). */
  before: Record<string, IdleWait>;
  /** By row key, every round's result: the current code's, then the baseline's if any. */
  rounds: Map<string, LoadResult[]>[];
  scale: { replicas: number; connections: number; result: LoadResult }[];
  timings: Timings | undefined;
}

interface Options {
  rounds: number;
  durationS: number;
  warmupS: number;
  connections: number;
  reloads: number;
  ref: string | undefined;
  baseline: string | undefined;
  onlyLoad: boolean;
  quietWaitS: number;
}

async function measure(options: Options): Promise<Measurements> {
  const before: Record<string, IdleWait> = {};
  const quiet = async (key: string) => {
    if (options.quietWaitS <= 0) return;
    const wait = await waitForQuiet(options.quietWaitS * 1000);
    before[key] = wait;
    if (!wait.quiet)
      log(
        `machine still busy (${wait.busyCores.toFixed(2)} cores) after ${seconds(wait.waitedMs / 1000)}: measuring anyway`,
      );
  };
  const name = runName("bench");
  log(`copying the repository (project ${name})`);
  const directory = await copyRepo(name, options.ref);
  const prod = new Stack({ name, directory, files: measuredProdFiles(directory) });
  const stacks = [prod];
  let timings: Partial<Timings> | undefined;
  if (options.onlyLoad) {
    log("building the production images…");
    await prod.build();
    await withLogs(prod, () => prod.up());
  } else {
    await quiet("cold");
    log("cold build of the production images (docker compose build --no-cache)…");
    const cold = await timedBuild(prod, ["--no-cache"]);
    log(`cold build: ${seconds(cold.seconds)}`);
    await appendFile(
      join(directory, "apps/backend/src/app.ts"),
      `// bench: a one-line change ${new Date().toISOString()}\n`,
    );
    await quiet("warm");
    log("warm rebuild after a one-line change in apps/backend/src/app.ts…");
    const warm = await timedBuild(prod);
    log(`warm rebuild: ${seconds(warm.seconds)}`);
    const sizes = await imageSizes(prod);
    await quiet("upFresh");
    log("production stack: up to healthy, fresh volumes…");
    const upFresh = await withLogs(prod, () => timedUp(prod));
    log(`up (fresh volumes): ${seconds(upFresh.ms / 1000)}`);
    timings = { cold, warm, sizes, upFresh, stackName: prod.name };
  }
  if (options.baseline) {
    const baseName = `${name}-baseline`;
    log(`copying ${options.baseline} (project ${baseName}), building and starting it…`);
    const baseDirectory = await copyRepo(baseName, options.baseline);
    const base = new Stack({
      name: baseName,
      directory: baseDirectory,
      files: measuredProdFiles(baseDirectory),
    });
    await base.build();
    await withLogs(base, () => base.up());
    stacks.push(base);
  }

  const load = async (stack: Stack, row: Row, connections = options.connections) => {
    // A restart gives Nginx a fresh network namespace: no TIME_WAIT sockets left over
    // from the previous row (they would slow this one down; see docs/PERFORMANCE.md).
    await stack.compose(["restart", "frontend"]);
    await stack.waitHealthy("frontend");
    const url = `${await stack.url()}${row.path}`;
    await quiet(row.key);
    await waitServing(url, row.method);
    log(
      `load: ${row.label} on ${stack.name} (${connections} connections, ${options.durationS} s)…`,
    );
    const result = await runLoad({
      url,
      method: row.method,
      connections,
      durationS: options.durationS,
      warmupS: options.warmupS,
      idempotencyKeys: row.keys ?? false,
      stack,
    });
    if (result.errors > 0) {
      // Why: Nginx's own error lines (upstream unreachable, DNS, timeouts), for the report.
      const logs = await stack.compose(["logs", "--no-color", "--since", "2m", "frontend"], {
        allowFailure: true,
      });
      const errors = logs.stdout.split("\n").filter((l) => /\[(error|crit|alert|emerg)\]/.test(l));
      result.nginxErrors = errors
        .slice(-3)
        .map((l) => l.replace(/^.*?\[(error|crit|alert|emerg)\]/, "[$1]"));
    }
    return result;
  };

  // Rounds: every row once per stack, the stacks' order swapped every round; the other
  // stack is paused meanwhile, so it takes no CPU from the one measured.
  const rounds = stacks.map(() => new Map<string, LoadResult[]>());
  for (let round = 0; round < options.rounds; round++) {
    for (const i of round % 2 ? [...stacks.keys()].reverse() : [...stacks.keys()]) {
      const stack = stacks[i] as Stack;
      const idle = stacks.filter((s) => s !== stack);
      for (const other of idle) await other.compose(["pause"]);
      log(`round ${round + 1} of ${options.rounds}: ${i === 0 ? "current code" : "baseline"}`);
      try {
        for (const row of ROWS) {
          if (row.cacheStopped) await stack.compose(["stop", "cache"]);
          const results = rounds[i]?.get(row.key) ?? [];
          rounds[i]?.set(row.key, [...results, await load(stack, row)]);
        }
      } finally {
        await stack.compose(["start", "cache"]);
        await stack.waitHealthy("cache");
        for (const other of idle) await other.compose(["unpause"]);
      }
    }
  }
  for (const stack of stacks.slice(1)) await stack.destroy();

  // The counter at 1, 2 and 4 replicas, then as many as before.
  const scale: Measurements["scale"] = [];
  const replicasBefore = (await prod.containerIds("counter")).length;
  const scaleCounter = (replicas: number) =>
    prod.compose([
      "up",
      "--detach",
      "--wait",
      "--no-deps",
      "--no-recreate",
      "--scale",
      `counter=${replicas}`,
      "counter",
    ]);
  for (const replicas of [1, 2, 4]) {
    log(`counter scaled to ${replicas} replica(s)…`);
    await scaleCounter(replicas);
    for (const connections of [50, 200])
      scale.push({ replicas, connections, result: await load(prod, VISITS, connections) });
  }
  await scaleCounter(replicasBefore);
  if (!timings) return { before, rounds, scale, timings: undefined };

  log("production stack: down (volumes kept), then up to healthy again…");
  await prod.down(false);
  await quiet("upExisting");
  const upExisting = await withLogs(prod, () => timedUp(prod));
  log(`up (existing volumes): ${seconds(upExisting.ms / 1000)}`);
  await prod.destroy();

  const dev = new Stack({ name: `${name}-dev`, directory, files: DEV_FILES });
  log("development stack: up --build…");
  await withLogs(dev, () => dev.up(["--build"]));
  await quiet("reload");
  log(`dev loop: ${options.reloads} edits of apps/backend/src/app.ts…`);
  const reloads = await measureReloads(dev, await dev.url(), options.reloads);
  log(`dev reload: ${reloads.map((r) => ms(r)).join(", ")}`);
  await dev.destroy();

  // The same loop with Compose Watch instead of bind mounts (docker-compose.watch.yml;
  // an older commit measured with --ref may not have it).
  let watchReloads: number[] = [];
  if (existsSync(join(directory, "docker-compose.watch.yml"))) {
    const watched = new Stack({ name: `${name}-watch`, directory, files: WATCH_FILES });
    log("development stack with Compose Watch: up --build…");
    await withLogs(watched, () => watched.up(["--build"]));
    await quiet("watchReload");
    log(`dev loop with Compose Watch: ${options.reloads} edits…`);
    watchReloads = await measureWatchReloads(watched, await watched.url(), options.reloads);
    log(`dev reload with Compose Watch: ${watchReloads.map((r) => ms(r)).join(", ")}`);
    await watched.destroy();
  }
  return {
    before,
    rounds,
    scale,
    timings: { ...timings, upExisting, reloads, watchReloads } as Timings,
  };
}

/** Waits (up to 20 s) for one 2xx answer, so a row never measures a stack that is not serving. */
async function waitServing(url: string, method: "GET" | "POST"): Promise<void> {
  const deadline = Date.now() + 20_000;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url, { method, signal: AbortSignal.timeout(3_000) });
      await response.arrayBuffer();
      if (response.ok) return;
      last = `HTTP ${response.status}`;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  log(`WARNING: ${method} ${url} gave no 2xx within 20 s (last: ${last}); measuring anyway`);
}

/** On failure, print the stack's recent logs before the error propagates. */
async function withLogs<T>(stack: Stack, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    console.error(await stack.logs());
    throw error;
  }
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
};

/** One row's rounds: medians of each figure (errors and requests: sums). */
interface Summary {
  reqPerSec: number;
  p50: number;
  p99: number;
  errors: number;
  requests: number;
  busyCores: number;
  /** µs of CPU per request served, by service (all replicas), and the whole stack's. */
  cpu: Map<string, number>;
  cpuTotal: number;
  statusCodes: Record<string, number>;
  nginxErrors: string[];
}

function summarize(results: LoadResult[]): Summary {
  const services = [...new Set(results.flatMap((r) => [...r.services.keys()]))];
  const perRequest = (r: LoadResult, service: string) =>
    ((r.services.get(service)?.cpuS ?? Number.NaN) * 1e6) / r.requests;
  const of = (pick: (r: LoadResult) => number) => median(results.map(pick));
  const sum = (pick: (r: LoadResult) => number) => results.reduce((t, r) => t + pick(r), 0);
  const statusCodes: Record<string, number> = {};
  for (const r of results)
    for (const [code, count] of Object.entries(r.statusCodes))
      statusCodes[code] = (statusCodes[code] ?? 0) + count;
  return {
    reqPerSec: of((r) => r.reqPerSec),
    p50: of((r) => r.p50),
    p99: of((r) => r.p99),
    errors: sum((r) => r.errors),
    requests: sum((r) => r.requests),
    busyCores: of((r) => r.busyCores),
    cpu: new Map(services.map((s) => [s, of((r) => perRequest(r, s))])),
    cpuTotal: of((r) => services.reduce((t, s) => t + perRequest(r, s), 0)),
    statusCodes,
    nginxErrors: results.flatMap((r) => r.nginxErrors ?? []).slice(-3),
  };
}

type Side = Map<string, Summary>;
const row = (side: Side, key: string) => side.get(key) as Summary;
const times = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
const cpuRatio = (side: Side) => row(side, "visits").cpuTotal / row(side, "data").cpuTotal;

function resultsTable(m: Measurements, [current, base]: Side[]): Table {
  const cur = (key: string) => row(current as Side, key);
  const [hello, data, visits, reads, outage] = ["hello", "data", "visits", "reads", "outage"].map(
    cur,
  ) as [Summary, Summary, Summary, Summary, Summary];
  const vsData = (r: Summary) =>
    `${pct(r.reqPerSec / data.reqPerSec)} of data req/s, p99 ${times(r.p99, data.p99)} data`;
  const visitsOk = (r: Summary) =>
    r.reqPerSec >= TARGETS.visitsShareOfData * data.reqPerSec &&
    r.p99 <= TARGETS.visitsP99OverData * data.p99 &&
    r.errors === 0;
  const dataOverBase = base ? data.reqPerSec / row(base, "data").reqPerSec : Number.NaN;
  // Result, target and verdict of each load row.
  const judged: Record<string, string[]> = {
    hello: ["ceiling", "—", ""],
    data: base
      ? [
          `${times(dataOverBase, 1)} the baseline's req/s`,
          `≥ ${TARGETS.dataOverBaseline}× baseline, 0 errors`,
          verdict(dataOverBase >= TARGETS.dataOverBaseline && data.errors === 0),
        ]
      : [
          `${pct(data.reqPerSec / hello.reqPerSec)} of hello-world's req/s`,
          "0 errors",
          verdict(data.errors === 0),
        ],
    visits: [
      vsData(visits),
      `≥ ${pct(TARGETS.visitsShareOfData)} of data req/s, p99 ≤ ${TARGETS.visitsP99OverData}× data, 0 errors`,
      verdict(visitsOk(visits)),
    ],
    reads: [
      vsData(reads),
      `≥ ${pct(TARGETS.readsShareOfData)} of data req/s, 0 errors`,
      verdict(reads.reqPerSec >= TARGETS.readsShareOfData * data.reqPerSec && reads.errors === 0),
    ],
    keyed: [vsData(cur("keyed")), "—", ""],
    outage: [
      vsData(outage),
      `as POST /api/visits, and p99 ≤ ${TARGETS.outageP99Ms} ms; POST /api/visits ≥ ${pct(TARGETS.visitsWithCacheShareOfWithout)} of this (${pct(visits.reqPerSec / outage.reqPerSec)})`,
      verdict(
        visitsOk(outage) &&
          outage.p99 <= TARGETS.outageP99Ms &&
          visits.reqPerSec >= TARGETS.visitsWithCacheShareOfWithout * outage.reqPerSec,
      ),
    ],
    outageKeyed: [vsData(cur("outageKeyed")), "—", ""],
  };
  const baseCells = (key: string) => {
    if (!base) return [];
    const b = row(base, key);
    return [
      int(b.reqPerSec),
      ms(b.p99),
      `${times(cur(key).reqPerSec, b.reqPerSec)} req/s, ${times(cur(key).p99, b.p99)} p99`,
    ];
  };
  const blank = ["", "", "", "", ...(base ? ["", "", ""] : [])];
  const justBefore = (key: string) => {
    const wait = m.before[key];
    return wait ? `${wait.busyCores.toFixed(2)} before` : "n/a";
  };
  const rows: string[][] = [
    ...ROWS.map((r) => {
      const s = cur(r.key);
      const cells = [
        int(s.reqPerSec),
        ms(s.p50),
        ms(s.p99),
        `${int(s.errors)} / ${int(s.requests)}`,
      ];
      return [
        r.label,
        ...cells,
        ...baseCells(r.key),
        ...(judged[r.key] ?? []),
        s.busyCores.toFixed(2),
      ];
    }),
    [
      "whole-stack CPU per visit ÷ per data request",
      ...blank.slice(0, 4),
      ...(base ? ["", "", `baseline: ${times(cpuRatio(base), 1)}`] : []),
      `${times(cpuRatio(current as Side), 1)} (${int(visits.cpuTotal)} µs against ${int(data.cpuTotal)} µs)`,
      `≤ ${TARGETS.visitCpuOverData}×`,
      verdict(cpuRatio(current as Side) <= TARGETS.visitCpuOverData),
      "",
    ],
  ];
  const t = m.timings;
  if (t) {
    const deps = dependencySteps(t.warm.steps);
    const depsCached = deps.length > 0 && deps.every((s) => s.status === "cached");
    const reloadMedian = median(t.reloads);
    rows.push(
      ...t.sizes.map((s) => [
        `image ${s.service} (production target)`,
        ...blank,
        `${mb(s.bytes)} total, +${mb(s.added)} over ${s.base}`,
        `≤ +${mb(TARGETS.imageAddedBytes)}`,
        verdict(s.added <= TARGETS.imageAddedBytes),
        "",
      ]),
      [
        `cold build, ${t.sizes.length} images (--no-cache)`,
        ...blank,
        seconds(t.cold.seconds),
        "—",
        "",
        justBefore("cold"),
      ],
      [
        "warm rebuild after a 1-line change (backend)",
        ...blank,
        `${seconds(t.warm.seconds)}; dependency layers ${deps.filter((s) => s.status === "cached").length}/${deps.length} CACHED`,
        `≤ ${TARGETS.warmRebuildS} s, deps cached`,
        verdict(t.warm.seconds <= TARGETS.warmRebuildS && depsCached),
        justBefore("warm"),
      ],
      ...(["upFresh", "upExisting"] as const).map((key) => [
        `up → all healthy (prod, ${key === "upFresh" ? "fresh" : "existing"} volumes)`,
        ...blank,
        seconds(t[key].ms / 1000),
        `≤ ${TARGETS.upHealthyS} s`,
        verdict(t[key].ms <= TARGETS.upHealthyS * 1000),
        justBefore(key),
      ]),
      [
        "dev reload, bind mounts: save .ts → new /api/data served",
        ...blank,
        `median ${ms(reloadMedian)} (${t.reloads.map((r) => ms(r)).join(", ")})`,
        `≤ ${ms(TARGETS.reloadMs)}`,
        verdict(reloadMedian <= TARGETS.reloadMs),
        justBefore("reload"),
      ],
      [
        "dev reload, Compose Watch (docker-compose.watch.yml)",
        ...blank,
        t.watchReloads.length === 0
          ? "n/a (no docker-compose.watch.yml)"
          : `median ${ms(median(t.watchReloads))} (${t.watchReloads.map((r) => ms(r)).join(", ")})`,
        `≤ ${ms(TARGETS.reloadMs)}`,
        t.watchReloads.length === 0 ? "" : verdict(median(t.watchReloads) <= TARGETS.reloadMs),
        justBefore("watchReload"),
      ],
    );
  }
  const baseColumns = base ? ["baseline req/s", "baseline p99", "current ÷ baseline"] : [];
  return {
    columns: [
      "Measurement",
      "req/s",
      "p50",
      "p99",
      "errors / requests",
      ...baseColumns,
      "Result",
      "Target",
      "Verdict",
      "machine busy (cores)",
    ],
    align: ["l", "r", "r", "r", "r", ...baseColumns.map(() => "r" as const), "l", "l", "l", "r"],
    rows,
  };
}

function cpuTable(sides: Side[]): Table {
  const services = Object.keys(ON_PATH);
  // –: the service was not running (the cache, stopped); n/a: its CPU could not be read.
  const us = (value: number | undefined) =>
    value === undefined ? "–" : Number.isNaN(value) ? "n/a" : int(value);
  return {
    columns: ["µs of CPU per request", ...Object.values(ON_PATH), "total"],
    align: ["l", ...services.map(() => "r" as const), "r"],
    rows: ROWS.flatMap((r) =>
      sides.map((side, i) => {
        const s = row(side, r.key);
        return [
          `${r.label}${i ? " (baseline)" : ""}`,
          ...services.map((n) => us(s.cpu.get(n))),
          us(s.cpuTotal),
        ];
      }),
    ),
  };
}

function scaleTable(m: Measurements, durationS: number): Table {
  return {
    columns: [
      "counter replicas",
      "connections",
      "visits/s",
      "p99",
      "errors / requests",
      "mean batch (visits)",
      "commits/s",
      "machine busy (cores)",
    ],
    align: ["r", "r", "r", "r", "r", "r", "r", "r"],
    rows: m.scale.map(({ replicas, connections, result: r }) => {
      const counter = r.services.get("counter");
      const batches = counter?.batches ?? 0;
      return [
        String(replicas),
        String(connections),
        int(r.reqPerSec),
        ms(r.p99),
        `${int(r.errors)} / ${int(r.requests)}`,
        batches > 0 ? ((counter?.batchedVisits ?? 0) / batches).toFixed(1) : "n/a",
        batches > 0 ? int(batches / durationS) : "n/a",
        r.busyCores.toFixed(2),
      ];
    }),
  };
}

function details(m: Measurements, sides: Side[]): string[] {
  const lines: string[] = [];
  const codes = (r: Summary) =>
    Object.entries(r.statusCodes)
      .map(([code, count]) => `${code}×${int(count)}`)
      .join(", ");
  sides.forEach((side, i) => {
    const of = i ? "the baseline's rows" : "the rows";
    lines.push(
      `Status codes of ${of}, all rounds: ${ROWS.map((r) => `${r.key} ${codes(row(side, r.key))}`).join("; ")}.`,
    );
    for (const r of ROWS) {
      const errors = row(side, r.key).nginxErrors;
      if (errors.length)
        lines.push(
          `Nginx errors during ${r.label}${i ? " (baseline)" : ""} (last 3): ${errors.join(" | ")}`,
        );
    }
  });
  const t = m.timings;
  if (!t) return lines;
  // FROM lines are never "CACHED" (BuildKit reports them DONE 0.0s): not work done.
  const executed = t.warm.steps.filter(
    (s) => s.status !== "cached" && !/^FROM /.test(s.instruction),
  );
  const unique = (items: string[]) => [...new Set(items)];
  lines.push(
    `Warm rebuild, steps executed: ${unique(executed.map((s) => `${describeStep(s)} ${s.seconds === undefined ? "" : seconds(s.seconds)}`)).join("; ")}.`,
    `Warm rebuild, dependency layers: ${unique(dependencySteps(t.warm.steps).map((s) => `${describeStep(s)} ${s.status.toUpperCase()}`)).join("; ")}.`,
    `Up, fresh volumes (container start→healthy, seconds after \`up\`): ${describeTimeline(t.upFresh, t.stackName)}.`,
    `Up, existing volumes: ${describeTimeline(t.upExisting, t.stackName)}.`,
  );
  return lines;
}

await runMain(async () => {
  const values = flags(USAGE, {
    rounds: { type: "string", default: "3" },
    duration: { type: "string", default: "10" },
    warmup: { type: "string", default: "2" },
    connections: { type: "string", default: "50" },
    reloads: { type: "string", default: "3" },
    "quiet-wait": { type: "string", default: "30" },
    ref: { type: "string" },
    baseline: { type: "string" },
    only: { type: "string" },
    "write-report": { type: "boolean", default: false },
  });
  if (values.only !== undefined && values.only !== "load") {
    console.error(`--only takes one value: load\n\n${USAGE}`);
    return 2;
  }
  const text = (value: unknown) => (typeof value === "string" ? value : undefined);
  const options: Options = {
    rounds: Math.round(positive("rounds", values.rounds, USAGE)),
    durationS: positive("duration", values.duration, USAGE),
    warmupS: Number(values.warmup) || 0,
    connections: Math.round(positive("connections", values.connections, USAGE)),
    reloads: Math.round(positive("reloads", values.reloads, USAGE)),
    quietWaitS: Number(values["quiet-wait"]) || 0,
    ref: text(values.ref),
    baseline: text(values.baseline),
    onlyLoad: values.only === "load",
  };

  const machine = await describeMachine("bench-", options.ref);
  const baselineCommit = options.baseline
    ? (
        await run("git", ["rev-parse", "--short", options.baseline], { cwd: REPO_ROOT })
      ).stdout.trim()
    : undefined;
  const m = await measure(options);
  const sides = m.rounds.map(
    (side) => new Map([...side].map(([key, results]) => [key, summarize(results)])),
  );

  const { ref, baseline } = options;
  const command = `pnpm bench -- ${ref ? `--ref ${ref} ` : ""}${baseline ? `--baseline ${baseline} ` : ""}${options.onlyLoad ? "--only load " : ""}--rounds ${options.rounds} --duration ${options.durationS} --warmup ${options.warmupS} --connections ${options.connections}${options.onlyLoad ? "" : ` --reloads ${options.reloads}`} --quiet-wait ${options.quietWaitS}`;
  const sourceOf = (side: Map<string, LoadResult[]>) =>
    side.get("data")?.[0]?.services.get("backend")?.source === "metrics"
      ? "process_cpu_seconds_total"
      : "cgroups (no metrics endpoint)";
  // Named per side only where the sides differ (a baseline from before the metrics).
  const sources =
    new Set(m.rounds.map(sourceOf)).size > 1
      ? m.rounds
          .map((side, i) => `${i ? "baseline" : "current code"}: ${sourceOf(side)}`)
          .join("; ")
      : sourceOf(m.rounds[0] ?? new Map());
  const results = resultsTable(m, sides);
  const cpu = cpuTable(sides);
  const scale = scaleTable(m, options.durationS);
  const notes = details(m, sides);
  const heading = [
    ...machineLines(machine),
    ...(baseline
      ? [
          `Baseline: commit ${baselineCommit} (${baseline}), copied with git archive, its own stack, paused while the current code's is measured and the other way round`,
        ]
      : []),
    `Command: ${command}`,
    `Load: autocannon, ${options.connections} connections, ${options.durationS} s per row after ${options.warmupS} s of warm-up, through Nginx on 127.0.0.1 (plain HTTP, as behind a load balancer that terminates TLS); errors = non-2xx + connection errors + timeouts. ${options.rounds} round(s) of every row, interleaved; figures are medians of the rounds. Nginx is restarted before each row, so every row starts without the previous row's TIME_WAIT sockets.`,
    `Machine busy: the whole machine's busy cores during a load row (the stack and the load generator included), or just before any other measurement (more than ~0.3 on ${machine.cores} cores means a shared machine and pessimistic numbers).`,
  ];
  const cpuHeading = `µs of CPU per request (medians; Node services, all replicas: ${sources}; the others: their cgroups; Nginx adds a key to a POST without one):`;
  const scaleHeading = `POST /api/visits with the counter scaled (one run each; batches from counter_batch_size, summed over the replicas):`;
  console.log(
    [
      "",
      ...heading,
      "",
      renderText(results),
      "",
      cpuHeading,
      renderText(cpu),
      "",
      scaleHeading,
      renderText(scale),
      "",
      ...notes.map((n) => `- ${n}`),
      "",
    ].join("\n"),
  );

  if (values["write-report"]) {
    const list = (lines: string[]) =>
      lines.map((line) => `- ${line.replace(/^Command: (.*)$/, "Command: `$1`")}`);
    const report = [
      ...list(heading),
      "",
      renderMarkdown(results),
      "",
      cpuHeading,
      "",
      renderMarkdown(cpu),
      "",
      scaleHeading,
      "",
      renderMarkdown(scale),
      "",
      ...list(notes),
    ].join("\n");
    // The page's share: the load rows and the CPU verdict (they come first), the columns
    // the page discusses, and the current code's CPU.
    const keep = [
      "Measurement",
      "req/s",
      "p99",
      "baseline req/s",
      "current ÷ baseline",
      "Result",
      "Verdict",
    ];
    const columns = results.columns.flatMap((name, i) => (keep.includes(name) ? [i] : []));
    const pick = <T>(cells: T[]) => columns.map((i) => cells[i] as T);
    const loadRows: Table = {
      columns: pick(results.columns),
      align: pick(results.align ?? []),
      rows: results.rows.slice(0, ROWS.length + 1).map(pick),
    };
    const currentCpu = { ...cpu, rows: cpu.rows.filter((r) => !r[0]?.endsWith("(baseline)")) };
    const summary = [
      ...list(heading.filter((line) => /^(Date|Code|Command): /.test(line))),
      "",
      renderMarkdown(loadRows),
      "",
      cpuHeading,
      "",
      renderMarkdown(currentCpu),
      "",
      "Everything else the run printed (targets, the baseline's CPU, builds, start-up, reloads, the scale rows): [bench/results/bench.md](../bench/results/bench.md).",
    ].join("\n");
    log(`wrote ${(await writeReport("bench", report, summary)).join(", ")}`);
  }
  return 0;
});
