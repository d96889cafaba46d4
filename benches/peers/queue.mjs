// The queue bench's workload (benches/queue.rs) on graphile-worker and pg-boss, so that their
// figures can be quoted beside nightcrier's from the same machine and session. Not part of CI.
//
//   cd benches/peers && npm install
//   node queue.mjs <graphile|pgboss-singleton> <postgres URL of a fresh database> [jobs] [samples]
//
// 20,000 jobs over 50 keys (~600-byte payload), at most one running job per key, a 2 ms
// handler, concurrency 5, one process. Per-key limit: graphile-worker's named queues (one job
// at a time per queue), pg-boss's `singleton` queue policy with the key as `singletonKey`.
// Violations are counted from the handler's own start/end times. Idle pickup: one job at a time
// with the worker idle, from the enqueue call's return to the handler's start.
// Prints one JSON line with the same fields as `cargo bench --bench queue`.

import { performance } from 'node:perf_hooks';

const [peer, url, jobsArg, samplesArg] = process.argv.slice(2);
if (!peer || !url) {
  console.error('usage: node queue.mjs <graphile|pgboss-singleton> <postgres URL> [jobs] [samples]');
  process.exit(2);
}
const JOBS = Number(jobsArg ?? 20000);
const SAMPLES = Number(samplesArg ?? 50);
const KEYS = 50;
const CONCURRENCY = 5;
const HANDLER_MS = 2;
const payloadText = 'x'.repeat(600);

const spans = [];
let onStart = null;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function handler(key, i) {
  const start = performance.now();
  if (onStart) onStart(i, start);
  await sleep(HANDLER_MS);
  spans.push([key, start, performance.now()]);
}

function violations() {
  const ev = [];
  spans.forEach(([k, s, e], i) => {
    ev.push([s, 1, i]);
    ev.push([e, 0, i]);
  });
  ev.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let running = 0;
  let bad = 0;
  const byKey = new Map();
  for (const [, kind, i] of ev) {
    const k = spans[i][0];
    if (kind === 1) {
      running += 1;
      const n = (byKey.get(k) ?? 0) + 1;
      byKey.set(k, n);
      if (running > CONCURRENCY || n > 1) bad += 1;
    } else {
      running -= 1;
      byKey.set(k, byKey.get(k) - 1);
    }
  }
  return bad;
}

const pct = (sorted, p) => sorted[Math.round((sorted.length - 1) * p)];

async function waitFor(cond) {
  while (!cond()) await sleep(1);
}

async function measure(enqueueAll, enqueueOne, start, stop) {
  await enqueueAll();
  const t0 = performance.now();
  await start();
  await waitFor(() => spans.length >= JOBS);
  const jobsPerS = JOBS / ((performance.now() - t0) / 1000);
  await sleep(500);
  const pickup = [];
  for (let i = 0; i < SAMPLES + 3; i++) {
    const started = new Promise((resolve) => {
      onStart = (_, at) => resolve(at);
    });
    await enqueueOne(i);
    const t = performance.now();
    const at = await started;
    if (i >= 3) pickup.push(at - t);
    await waitFor(() => spans.length >= JOBS + i + 1);
    await sleep(20);
  }
  onStart = null;
  await stop();
  pickup.sort((a, b) => a - b);
  console.log(
    JSON.stringify({
      queue: peer,
      jobs_per_s: Math.round(jobsPerS * 10) / 10,
      violations: violations(),
      pickup_p50_ms: Math.round(pct(pickup, 0.5) * 100) / 100,
      pickup_p99_ms: Math.round(pct(pickup, 0.99) * 100) / 100,
      jobs: JOBS,
      clusters: KEYS,
      concurrency: CONCURRENCY,
      handler_ms: HANDLER_MS,
      processes: 1,
    }),
  );
}

if (peer === 'graphile') {
  const { run, makeWorkerUtils } = await import('graphile-worker');
  const utils = await makeWorkerUtils({ connectionString: url });
  await utils.migrate();
  let runner;
  const job = (i) => ({
    identifier: 'triage',
    payload: { i, key: `k${i % KEYS}`, text: payloadText },
    queueName: `k${i % KEYS}`,
  });
  await measure(
    async () => {
      for (let i = 0; i < JOBS; i += 500) {
        const batch = [];
        for (let j = i; j < Math.min(i + 500, JOBS); j++) batch.push(job(j));
        await utils.addJobs(batch);
      }
    },
    async (i) => {
      await utils.addJob('triage', job(JOBS + i).payload, { queueName: `k${i % KEYS}` });
    },
    async () => {
      runner = await run({
        connectionString: url,
        concurrency: CONCURRENCY,
        noHandleSignals: true,
        logger: new (await import('graphile-worker')).Logger(() => () => {}),
        taskList: { triage: async (p) => handler(p.key, p.i) },
      });
    },
    async () => {
      await runner.stop();
      await utils.release();
    },
  );
} else if (peer === 'pgboss-singleton') {
  const { PgBoss } = await import('pg-boss');
  const boss = new PgBoss({ connectionString: url });
  boss.on('error', (e) => console.error(e));
  await boss.start();
  const queue = 'triage';
  await boss.createQueue(queue, { policy: 'singleton' });
  const job = (i) => ({ data: { i, key: `k${i % KEYS}`, text: payloadText }, singletonKey: `k${i % KEYS}` });
  await measure(
    async () => {
      for (let i = 0; i < JOBS; i += 500) {
        const batch = [];
        for (let j = i; j < Math.min(i + 500, JOBS); j++) batch.push(job(j));
        await boss.insert(queue, batch);
      }
    },
    async (i) => {
      const j = job(JOBS + i);
      await boss.send(queue, j.data, { singletonKey: j.singletonKey });
    },
    async () => {
      await boss.work(queue, { localConcurrency: CONCURRENCY, batchSize: 1, pollingIntervalSeconds: 0.5, burstWhenReadyExceeds: 1 }, async ([j]) =>
        handler(j.data.key, j.data.i),
      );
    },
    async () => {
      await boss.stop({ graceful: true, wait: true });
    },
  );
} else {
  console.error(`unknown peer ${peer}`);
  process.exit(2);
}
process.exit(0);
