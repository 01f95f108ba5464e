// `pnpm bench`: one run, one table. Builds the production images in a throwaway copy
// of the repository (cold, then warm after a one-line change), measures their sizes,
// times `up` to healthy, drives HTTP load through Nginx with autocannon, and times
// the development stack's hot reload. Everything it starts is removed at the end,
// also on an error or Ctrl-C. See docs/PERFORMANCE.md.
import { existsSync } from "node:fs";
import { appendFile } from "node:fs/promises";
import { join } from "node:path";
import { flags, positive } from "./args.ts";
import { type BuildTiming, dependencySteps, describeStep, timedBuild } from "./build.ts";
import { onCleanup, runMain } from "./cleanup.ts";
import { type IdleWait, waitForQuiet } from "./cpu.ts";
import { type ImageSize, imageSizes } from "./images.ts";
import { type LoadResult, runLoad } from "./load.ts";
import { log } from "./log.ts";
import { describeMachine, machineLines } from "./machine.ts";
import { run } from "./proc.ts";
import { measureReloads, measureWatchReloads, WATCH_FILES } from "./reload.ts";
import { writeReportSection } from "./report.ts";
import { copyRepo, DEV_FILES, measuredProdFiles, runName, Stack } from "./stack.ts";
import { describeTimeline, type StartupTiming, timedUp } from "./startup.ts";
import { int, mb, ms, pct, renderMarkdown, renderText, seconds, type Table } from "./table.ts";

const USAGE = `Usage: pnpm bench [-- options]

  --stack prod|dev    stack for the load rows and the up-to-healthy rows (default: prod)
  --duration S        measured seconds per load row (default: 10)
  --warmup S          unrecorded seconds of load before each row (default: 2)
  --connections N     concurrent connections per load row (default: 50)
  --reloads N         hot-reload edits to time on the dev stack (default: 3)
  --ref REF           measure a commit (git archive REF) instead of the working tree
  --quiet-wait S      before each measurement, wait up to S seconds for the machine to be
                      quiet (< 0.3 busy cores for 3 s); 0 = never wait (default: 30)
  --sustained S       add a row: hello-world measured after S s of unbroken load (Nginx's
                      TIME_WAIT sockets pile up; default: 0 = no such row)
  --write-report      also write the tables into docs/PERFORMANCE.md
  -h, --help          this text

Needs Docker with Compose v2 and the base images (NODE_IMAGE, NGINX_IMAGE,
POSTGRES_IMAGE, REDIS_IMAGE or their defaults). Runs about 5 minutes on 2 cores.`;

const TARGETS = {
  /** Nginx's cost: GET /api/data through it, against one backend replica reached directly. */
  dataShareOfDirect: 0.6,
  visitsShareOfData: 0.85,
  /** A cache hit costs about what a trivial route does. */
  readsShareOfData: 0.9,
  /** The cache is off the visit's path: it costs a visit (almost) nothing. */
  visitsWithCacheShareOfWithout: 0.95,
  visitsP99OverData: 1.5,
  outageP99Ms: 100,
  imageAddedBytes: 20e6,
  warmRebuildS: 15,
  upHealthyS: 10,
  reloadMs: 2_000,
};

const verdict = (ok: boolean) => (ok ? "met" : "MISSED");

interface Measurements {
  /** Busy cores of the machine just before each measurement (other work running). */
  before: Record<string, IdleWait>;
  stack: "prod" | "dev";
  connections: number;
  durationS: number;
  cold: BuildTiming;
  warm: BuildTiming;
  sizes: ImageSize[];
  upFresh: StartupTiming;
  upExisting: StartupTiming;
  stackName: string;
  hello: LoadResult;
  direct: LoadResult;
  data: LoadResult;
  visits: LoadResult;
  reads: LoadResult;
  visitsKeyed: LoadResult;
  outage: LoadResult;
  outageKeyed: LoadResult;
  sustained: LoadResult | undefined;
  sustainedS: number;
  reloads: number[];
  watchReloads: number[];
}

async function measure(options: {
  stack: "prod" | "dev";
  durationS: number;
  warmupS: number;
  connections: number;
  reloads: number;
  ref: string | undefined;
  quietWaitS: number;
  sustainedS: number;
}): Promise<Measurements> {
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
  const dev = new Stack({ name: `${name}-dev`, directory, files: DEV_FILES });

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

  const target = options.stack === "prod" ? prod : dev;
  if (target === dev) {
    log("building the development images…");
    await dev.build();
  }
  await quiet("upFresh");
  log(`${options.stack} stack: up to healthy, fresh volumes…`);
  const upFresh = await withLogs(target, () => timedUp(target));
  log(`up (fresh volumes): ${seconds(upFresh.ms / 1000)}`);
  const load = async (
    label: string,
    method: "GET" | "POST",
    path: string,
    warmupS?: number,
    idempotencyKeys = false,
  ) => {
    // A restart gives Nginx a fresh network namespace: no TIME_WAIT sockets left over
    // from the previous row (they would slow this one down; see docs/PERFORMANCE.md).
    await target.compose(["restart", "frontend"]);
    await target.waitHealthy("frontend");
    const url = await target.url();
    await quiet(label);
    await waitServing(`${url}${path}`, method);
    log(`load: ${label} (${options.connections} connections, ${options.durationS} s)…`);
    const result = await runLoad({
      url: `${url}${path}`,
      method,
      connections: options.connections,
      durationS: options.durationS,
      warmupS: warmupS ?? options.warmupS,
      idempotencyKeys,
      stack: target,
    });
    if (result.errors > 0) {
      // Why: Nginx's own error lines (upstream unreachable, DNS, timeouts), for the report.
      const logs = await target.compose(["logs", "--no-color", "--since", "2m", "frontend"], {
        allowFailure: true,
      });
      const errors = logs.stdout.split("\n").filter((l) => /\[(error|crit|alert|emerg)\]/.test(l));
      result.nginxErrors = errors
        .slice(-3)
        .map((l) => l.replace(/^.*?\[(error|crit|alert|emerg)\]/, "[$1]"));
    }
    return result;
  };
  const hello = await load("hello-world GET /api/healthz", "GET", "/api/healthz");
  const direct = await loadDirect(target, options, quiet);
  const data = await load("GET /api/data", "GET", "/api/data");
  const visits = await load("POST /api/visits", "POST", "/api/visits");
  const reads = await load("GET /api/visits", "GET", "/api/visits");
  const visitsKeyed = await load(
    "POST /api/visits with Idempotency-Key",
    "POST",
    "/api/visits",
    undefined,
    true,
  );
  const sustained =
    options.sustainedS > 0
      ? await load("hello-world, sustained", "GET", "/api/healthz", options.sustainedS)
      : undefined;
  log("stopping the cache service (Redis)…");
  await target.compose(["stop", "cache"]);
  let outage: LoadResult;
  let outageKeyed: LoadResult;
  try {
    outage = await load("POST /api/visits, cache stopped", "POST", "/api/visits");
    outageKeyed = await load(
      "POST /api/visits with Idempotency-Key, cache stopped",
      "POST",
      "/api/visits",
      undefined,
      true,
    );
  } finally {
    await target.compose(["start", "cache"]);
    await target.waitHealthy("cache");
  }

  log(`${options.stack} stack: down (volumes kept), then up to healthy again…`);
  await target.down(false);
  await quiet("upExisting");
  const upExisting = await withLogs(target, () => timedUp(target));
  log(`up (existing volumes): ${seconds(upExisting.ms / 1000)}`);
  if (target === prod) await prod.destroy();

  if (target !== dev) {
    log("development stack: up --build…");
    await withLogs(dev, () => dev.up(["--build"]));
  }
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
    stack: options.stack,
    connections: options.connections,
    durationS: options.durationS,
    cold,
    warm,
    sizes,
    upFresh,
    upExisting,
    stackName: target.name,
    hello,
    direct,
    data,
    visits,
    reads,
    visitsKeyed,
    outage,
    outageKeyed,
    sustained,
    sustainedS: options.sustainedS,
    reloads,
    watchReloads,
  };
}

/**
 * One more backend replica, from the stack's own image with the production settings
 * (limits, user, read-only root), on the stack's front network but published on
 * 127.0.0.1: GET /data measured without Nginx, the reference for Nginx's cost.
 */
async function loadDirect(
  stack: Stack,
  options: { connections: number; durationS: number; warmupS: number },
  quiet: (key: string) => Promise<void>,
): Promise<LoadResult> {
  const image = (await stack.builtImages()).get("backend");
  if (!image) throw new Error("no backend image");
  const name = `${stack.name}-direct-backend`;
  // A port can only be published on a network that is not internal: edge where the
  // measured commit has it, else (older commits) front.
  const edge = `${stack.name}_edge`;
  const hasEdge =
    (await run("docker", ["network", "inspect", edge], { allowFailure: true })).code === 0;
  const network = hasEdge ? edge : `${stack.name}_front`;
  await run("docker", [
    "run",
    "--detach",
    "--name",
    name,
    ...["--network", network, "--publish", "127.0.0.1::3001"],
    ...["--env", "PORT=3001", "--env", "NODE_ENV=production", "--env", "LOG_LEVEL=info"],
    ...["--cpus", "1", "--memory", "256m", "--pids-limit", "128", "--init"],
    ...["--user", "node", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL"],
    image,
  ]);
  const remove = () =>
    run("docker", ["rm", "--force", name], { allowFailure: true }).then(() => {});
  // Also removed on Ctrl-C or an error elsewhere in the run.
  const unregister = onCleanup(remove);
  try {
    const port = (await run("docker", ["port", name, "3001"])).stdout.trim().split(":").pop();
    const url = `http://127.0.0.1:${port}/data`;
    await waitServing(url, "GET");
    await quiet("direct");
    log(`load: GET /data on one backend replica, no Nginx (${options.connections} connections)…`);
    return await runLoad({
      url,
      method: "GET",
      connections: options.connections,
      durationS: options.durationS,
      warmupS: options.warmupS,
      idempotencyKeys: false,
    });
  } finally {
    unregister();
    await remove();
  }
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

function resultsTable(m: Measurements): Table {
  const { hello } = m;
  const loadCells = (r: LoadResult) => [
    int(r.reqPerSec),
    ms(r.p50),
    ms(r.p99),
    `${int(r.errors)} / ${int(r.requests)}`,
  ];
  const vsHello = (r: LoadResult) =>
    `${pct(r.reqPerSec / hello.reqPerSec)} of hello req/s, p99 ${(r.p99 / hello.p99).toFixed(1)}× hello`;
  // Other work on the machine: during a load row (measured), or just before anything else.
  const during = (r: LoadResult) => (r.cpu ? r.cpu.otherCores.toFixed(2) : "n/a");
  const justBefore = (key: string) => {
    const wait = m.before[key];
    return wait ? `${wait.busyCores.toFixed(2)} before` : "n/a";
  };
  const dataOk =
    m.data.reqPerSec >= TARGETS.dataShareOfDirect * m.direct.reqPerSec && m.data.errors === 0;
  const visitsOkAgainstData = (r: LoadResult) =>
    r.reqPerSec >= TARGETS.visitsShareOfData * m.data.reqPerSec &&
    r.p99 <= TARGETS.visitsP99OverData * m.data.p99 &&
    r.errors === 0;
  const visitsOk = visitsOkAgainstData(m.visits);
  const outageOk = visitsOkAgainstData(m.outage) && m.outage.p99 <= TARGETS.outageP99Ms;
  const readsOk =
    m.reads.reqPerSec >= TARGETS.readsShareOfData * m.data.reqPerSec && m.reads.errors === 0;
  const cacheOffPathOk =
    m.visits.reqPerSec >= TARGETS.visitsWithCacheShareOfWithout * m.outage.reqPerSec;
  const vsData = (r: LoadResult) =>
    `${pct(r.reqPerSec / m.data.reqPerSec)} of data req/s, p99 ${(r.p99 / m.data.p99).toFixed(1)}× data`;
  const blank = ["", "", "", ""];
  const deps = dependencySteps(m.warm.steps);
  const depsCached = deps.length > 0 && deps.every((s) => s.status === "cached");
  const reloadMedian = median(m.reloads);
  const rows: string[][] = [
    [
      "hello-world GET /api/healthz (ceiling)",
      ...loadCells(hello),
      "reference",
      "—",
      "",
      during(hello),
    ],
    [
      "GET /data on one backend replica, no Nginx (reference)",
      ...loadCells(m.direct),
      vsHello(m.direct),
      "—",
      "",
      during(m.direct),
    ],
    [
      "GET /api/data",
      ...loadCells(m.data),
      `${pct(m.data.reqPerSec / m.direct.reqPerSec)} of the direct replica's req/s`,
      `≥ ${pct(TARGETS.dataShareOfDirect)} of direct, 0 errors`,
      verdict(dataOk),
      during(m.data),
    ],
    [
      "POST /api/visits",
      ...loadCells(m.visits),
      vsData(m.visits),
      `≥ ${pct(TARGETS.visitsShareOfData)} of data req/s, p99 ≤ ${TARGETS.visitsP99OverData}× data, 0 errors`,
      verdict(visitsOk),
      during(m.visits),
    ],
    [
      "GET /api/visits (cache hits)",
      ...loadCells(m.reads),
      vsData(m.reads),
      `≥ ${pct(TARGETS.readsShareOfData)} of data req/s, 0 errors`,
      verdict(readsOk),
      during(m.reads),
    ],
    [
      "… with an Idempotency-Key per request (as the page sends)",
      ...loadCells(m.visitsKeyed),
      vsData(m.visitsKeyed),
      "—",
      "",
      during(m.visitsKeyed),
    ],
    [
      "POST /api/visits, cache stopped",
      ...loadCells(m.outage),
      vsData(m.outage),
      `as POST /api/visits, and p99 ≤ ${TARGETS.outageP99Ms} ms; POST /api/visits ≥ ${pct(TARGETS.visitsWithCacheShareOfWithout)} of this (${pct(m.visits.reqPerSec / m.outage.reqPerSec)})`,
      verdict(outageOk && cacheOffPathOk),
      during(m.outage),
    ],
    [
      "… the same with an Idempotency-Key per request",
      ...loadCells(m.outageKeyed),
      vsData(m.outageKeyed),
      "—",
      "",
      during(m.outageKeyed),
    ],
    ...(m.sustained
      ? [
          [
            `hello-world after ${m.sustainedS} s of unbroken load`,
            ...loadCells(m.sustained),
            vsHello(m.sustained),
            "—",
            "",
            during(m.sustained),
          ],
        ]
      : []),
    ...m.sizes.map((s) => [
      `image ${s.service} (production target)`,
      ...blank,
      `${mb(s.bytes)} total, +${mb(s.added)} over ${s.base}`,
      `≤ +${mb(TARGETS.imageAddedBytes)}`,
      verdict(s.added <= TARGETS.imageAddedBytes),
      "",
    ]),
    [
      `cold build, ${m.sizes.length} images (--no-cache)`,
      ...blank,
      seconds(m.cold.seconds),
      "—",
      "",
      justBefore("cold"),
    ],
    [
      "warm rebuild after a 1-line change (backend)",
      ...blank,
      `${seconds(m.warm.seconds)}; dependency layers ${deps.filter((s) => s.status === "cached").length}/${deps.length} CACHED`,
      `≤ ${TARGETS.warmRebuildS} s, deps cached`,
      verdict(m.warm.seconds <= TARGETS.warmRebuildS && depsCached),
      justBefore("warm"),
    ],
    [
      `up → all healthy (${m.stack}, fresh volumes)`,
      ...blank,
      seconds(m.upFresh.ms / 1000),
      `≤ ${TARGETS.upHealthyS} s`,
      verdict(m.upFresh.ms <= TARGETS.upHealthyS * 1000),
      justBefore("upFresh"),
    ],
    [
      `up → all healthy (${m.stack}, existing volumes)`,
      ...blank,
      seconds(m.upExisting.ms / 1000),
      `≤ ${TARGETS.upHealthyS} s`,
      verdict(m.upExisting.ms <= TARGETS.upHealthyS * 1000),
      justBefore("upExisting"),
    ],
    [
      "dev reload, bind mounts: save .ts → new /api/data served",
      ...blank,
      `median ${ms(reloadMedian)} (${m.reloads.map((r) => ms(r)).join(", ")})`,
      `≤ ${ms(TARGETS.reloadMs)}`,
      verdict(reloadMedian <= TARGETS.reloadMs),
      justBefore("reload"),
    ],
    [
      "dev reload, Compose Watch (docker-compose.watch.yml)",
      ...blank,
      m.watchReloads.length === 0
        ? "n/a (no docker-compose.watch.yml)"
        : `median ${ms(median(m.watchReloads))} (${m.watchReloads.map((r) => ms(r)).join(", ")})`,
      `≤ ${ms(TARGETS.reloadMs)}`,
      m.watchReloads.length === 0 ? "" : verdict(median(m.watchReloads) <= TARGETS.reloadMs),
      justBefore("watchReload"),
    ],
  ];
  return {
    columns: [
      "Measurement",
      "req/s",
      "p50",
      "p99",
      "errors / requests",
      "Result",
      "Target",
      "Verdict",
      "other load (cores)",
    ],
    align: ["l", "r", "r", "r", "r", "l", "l", "l", "r"],
    rows,
  };
}

function cpuTable(m: Measurements): Table {
  const rows: [string, LoadResult][] = [
    ["hello-world", m.hello],
    ["GET /data, direct", m.direct],
    ["GET /api/data", m.data],
    ["POST /api/visits", m.visits],
    ["GET /api/visits", m.reads],
    ["POST + key", m.visitsKeyed],
    ["POST, cache stopped", m.outage],
    ["POST + key, cache stopped", m.outageKeyed],
    ...(m.sustained
      ? [[`hello-world after ${m.sustainedS} s`, m.sustained] as [string, LoadResult]]
      : []),
  ];
  const services = [
    ...new Set(rows.flatMap(([, r]) => r.cpu?.services.map((s) => s.service) ?? [])),
  ].sort();
  const cores = (value: number) => (Number.isNaN(value) ? "n/a" : value.toFixed(2));
  return {
    columns: [
      "Load row",
      "machine busy",
      "load generator",
      "docker-proxy",
      "dockerd, shims, other",
      "Nginx TIME_WAIT at end",
      ...services,
    ],
    align: ["l", "r", "r", "r", "r", "r", ...services.map(() => "r" as const)],
    rows: rows.map(([label, r]) => [
      label,
      r.cpu ? cores(r.cpu.hostCores) : "n/a",
      r.cpu ? cores(r.cpu.generatorCores) : "n/a",
      r.cpu ? cores(r.cpu.proxyCores) : "n/a",
      r.cpu ? cores(r.cpu.otherCores) : "n/a",
      r.nginxTimeWait === undefined || Number.isNaN(r.nginxTimeWait) ? "n/a" : int(r.nginxTimeWait),
      ...services.map((name) => {
        const s = r.cpu?.services.find((x) => x.service === name);
        if (!s) return "";
        const limit = s.limit === undefined ? "" : ` / ${s.replicas}×${s.limit}`;
        const throttled = s.throttled >= 0.05 ? `, throttled ${pct(s.throttled)}` : "";
        return `${cores(s.cores)}${limit}${throttled}`;
      }),
    ]),
  };
}

function details(m: Measurements): string[] {
  const lines: string[] = [];
  const codes = (r: LoadResult) =>
    Object.entries(r.statusCodes)
      .map(([code, count]) => `${code}×${int(count)}`)
      .join(", ");
  lines.push(
    `Status codes: hello ${codes(m.hello)}; direct ${codes(m.direct)}; data ${codes(m.data)}; visits ${codes(m.visits)}; with keys ${codes(m.visitsKeyed)}; cache stopped ${codes(m.outage)}; with keys ${codes(m.outageKeyed)}.`,
  );
  for (const [label, r] of [
    ["hello", m.hello],
    ["data", m.data],
    ["visits", m.visits],
    ["visits with keys", m.visitsKeyed],
    ["cache stopped", m.outage],
    ["cache stopped, with keys", m.outageKeyed],
  ] as const) {
    if (r.nginxErrors?.length)
      lines.push(`Nginx errors during the ${label} row (last 3): ${r.nginxErrors.join(" | ")}`);
  }
  lines.push(
    `Latency p90/max: hello ${ms(m.hello.p90)}/${ms(m.hello.max)}; direct ${ms(m.direct.p90)}/${ms(m.direct.max)}; data ${ms(m.data.p90)}/${ms(m.data.max)}; visits ${ms(m.visits.p90)}/${ms(m.visits.max)}; cache stopped ${ms(m.outage.p90)}/${ms(m.outage.max)}; with keys ${ms(m.outageKeyed.p90)}/${ms(m.outageKeyed.max)}.`,
  );
  // FROM lines are never "CACHED" (BuildKit reports them DONE 0.0s): not work done.
  const executed = m.warm.steps.filter(
    (s) => s.status !== "cached" && !/^FROM /.test(s.instruction),
  );
  const unique = (items: string[]) => [...new Set(items)];
  lines.push(
    `Warm rebuild, steps executed: ${unique(executed.map((s) => `${describeStep(s)} ${s.seconds === undefined ? "" : seconds(s.seconds)}`)).join("; ")}.`,
  );
  lines.push(
    `Warm rebuild, dependency layers: ${unique(
      dependencySteps(m.warm.steps).map((s) => `${describeStep(s)} ${s.status.toUpperCase()}`),
    ).join("; ")}.`,
  );
  lines.push(
    `Up, fresh volumes (container start→healthy, seconds after \`up\`): ${describeTimeline(m.upFresh, m.stackName)}.`,
  );
  lines.push(`Up, existing volumes: ${describeTimeline(m.upExisting, m.stackName)}.`);
  return lines;
}

await runMain(async () => {
  const values = flags(USAGE, {
    stack: { type: "string", default: "prod" },
    duration: { type: "string", default: "10" },
    warmup: { type: "string", default: "2" },
    connections: { type: "string", default: "50" },
    reloads: { type: "string", default: "3" },
    "quiet-wait": { type: "string", default: "30" },
    sustained: { type: "string", default: "0" },
    ref: { type: "string" },
    "write-report": { type: "boolean", default: false },
  });
  const ref = typeof values.ref === "string" ? values.ref : undefined;
  if (values.stack !== "prod" && values.stack !== "dev") {
    console.error(`--stack must be prod or dev\n\n${USAGE}`);
    return 2;
  }
  const options = {
    stack: values.stack,
    durationS: positive("duration", values.duration, USAGE),
    warmupS: Number(values.warmup) || 0,
    connections: Math.round(positive("connections", values.connections, USAGE)),
    reloads: Math.round(positive("reloads", values.reloads, USAGE)),
    quietWaitS: Number(values["quiet-wait"]) || 0,
    sustainedS: Number(values.sustained) || 0,
    ref,
  } as const;

  const machine = await describeMachine("bench-", ref);
  const m = await measure(options);

  const command = `pnpm bench -- ${ref ? `--ref ${ref} ` : ""}--stack ${options.stack} --duration ${options.durationS} --warmup ${options.warmupS} --connections ${options.connections} --reloads ${options.reloads} --quiet-wait ${options.quietWaitS}${options.sustainedS ? ` --sustained ${options.sustainedS}` : ""}`;
  const results = resultsTable(m);
  const cpu = cpuTable(m);
  const notes = details(m);
  const heading = [
    ...machineLines(machine),
    `Command: ${command}`,
    `Load: autocannon, ${options.connections} connections, ${options.durationS} s per row after ${options.warmupS} s of warm-up, through Nginx on 127.0.0.1; errors = non-2xx + connection errors + timeouts. Nginx is restarted before each row, so every row starts without the previous row's TIME_WAIT sockets.`,
    `Other load: during a load row, CPU cores used outside the stack's containers, the load generator and docker-proxy — mostly dockerd and containerd-shim writing every request's log lines (Nginx access log, the apps' request logs) to the json-file logs, plus anything else running; before any other measurement, the whole machine's busy cores (more than ~0.3 on ${machine.cores} cores means a shared machine and pessimistic numbers).`,
  ];
  console.log(
    [
      "",
      ...heading,
      "",
      renderText(results),
      "",
      "CPU cores used during each load row (service: all replicas / replicas×limit):",
      renderText(cpu),
      "",
      ...notes.map((n) => `- ${n}`),
      "",
    ].join("\n"),
  );

  if (values["write-report"]) {
    const markdown = [
      ...heading.map((line) => `- ${line.replace(/^Command: (.*)$/, "Command: `$1`")}`),
      "",
      renderMarkdown(results),
      "",
      "CPU cores used during each load row (service: all replicas / replicas × limit per container; throttled = share of CFS periods in which the busiest replica hit its limit):",
      "",
      renderMarkdown(cpu),
      "",
      ...notes.map((n) => `- ${n}`),
    ].join("\n");
    log(`wrote ${await writeReportSection("bench", markdown)}`);
  }
  return 0;
});
