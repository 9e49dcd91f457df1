// A Jobcast worker for the "external" kind in Node.js 20, built-in fetch only
// (docs/workers.md). It claims a job, counts to args.n (3 by default) reporting
// progress and a log line per step (two reports in one batched request; each
// accepted report renews the lease), and ends succeeded with a result.
//   JOBCAST_URL=http://127.0.0.1:5000 WORKER_TOKEN=... node examples/worker.mjs [name]
// ONCE=1: exit after one job.  STEP_DELAY: seconds per step (default 0.2).
// A failed claim is said once (the server's error text), then retried after RETRY_DELAY
// seconds (default 2), doubling up to RETRY_MAX (default 60); a claim that works resets it.
const url = process.env.JOBCAST_URL ?? "http://127.0.0.1:5000";
const workerToken = process.env.WORKER_TOKEN;
const name = process.argv[2] ?? `node-${process.pid}`;
const delay = Number(process.env.STEP_DELAY ?? "0.2") * 1000;
const firstPause = Number(process.env.RETRY_DELAY ?? "2") * 1000;
const maxPause = Number(process.env.RETRY_MAX ?? "60") * 1000;
const ENDED = ["succeeded", "failed", "cancelled"];
if (!workerToken) throw new Error("set WORKER_TOKEN");

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function post(path, body, bearer) {
  return fetch(url + path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${bearer}` },
    body: JSON.stringify(body),
  });
}

// Send reports as one batch; true while the job should go on.
async function report(job, ...updates) {
  const res = await post("/api/progress", updates.map((u) => ({ jobId: job.jobId, ...u })),
                         job.token);
  if (res.status !== 200) throw new Error(`report: HTTP ${res.status}`);
  const { results } = await res.json();
  return results.every((r) => r.status === 204 && !ENDED.includes(r.state));
}

async function run(job) {
  const n = Number.isInteger(job.args.n) ? job.args.n : 3;
  for (let i = 1; i <= n; i++) {
    // Every report carries the counts and a message that agrees with them.
    const step = { state: "running", current: i, total: n, message: `step ${i} of ${n}` };
    const going = await report(job, step, { ...step, log: [`step ${i} of ${n} done by ${name}`] });
    if (!going) return console.log(`stopped ${job.jobId}`);
    await sleep(delay);
  }
  await report(job, { state: "succeeded", result: { steps: n, worker: name } });
  console.log(`done ${job.jobId}`);
}

// After a failed claim: say why (unless that was said last), wait, wait longer next time.
let pause = firstPause, said = "";
async function backOff(why) {
  if (why !== said) console.error(`claim: ${why} (retrying, at most every ${maxPause / 1000}s)`);
  said = why;
  await sleep(pause);
  pause = Math.min(pause * 2, maxPause);
}

for (;;) {
  let res;
  try {
    res = await post("/api/workers/claim", { kinds: ["external"], worker: name, wait: 20 },
                     workerToken);
  } catch (err) {
    await backOff(`cannot reach ${url}: ${err.cause?.code ?? err.cause?.message ?? err.message}`);
    continue;
  }
  if (res.status !== 200 && res.status !== 204) {
    const { error } = await res.json().catch(() => ({}));
    await backOff(`HTTP ${res.status}: ${error ?? "no error text"}`);
    continue;
  }
  pause = firstPause; said = "";
  if (res.status === 204) continue;
  const job = await res.json();
  console.log(`claimed ${job.jobId}`);
  try { await run(job); } catch (err) { console.error(`job ${job.jobId}: ${err.message}`); }
  if (process.env.ONCE) break;
}
