// A Jobcast worker for the "external" kind in Node.js 20, built-in fetch only
// (docs/workers.md). It claims a job, counts to args.n (3 by default) reporting
// progress and a log line per step (two reports in one batched request; each
// accepted report renews the lease), and ends succeeded with a result.
//   JOBCAST_URL=http://127.0.0.1:5000 WORKER_TOKEN=... node examples/worker.mjs [name]
// ONCE=1: exit after one job.  STEP_DELAY: seconds per step (default 0.2).
const url = process.env.JOBCAST_URL ?? "http://127.0.0.1:5000";
const workerToken = process.env.WORKER_TOKEN;
const name = process.argv[2] ?? `node-${process.pid}`;
const delay = Number(process.env.STEP_DELAY ?? "0.2") * 1000;
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
    const going = await report(job,
      { state: "running", current: i, total: n, message: `step ${i} of ${n}` },
      { state: "running", log: [`step ${i} of ${n} done by ${name}`], current: i, total: n });
    if (!going) return console.log(`stopped ${job.jobId}`);
    await sleep(delay);
  }
  await report(job, { state: "succeeded", result: { steps: n, worker: name } });
  console.log(`done ${job.jobId}`);
}

for (;;) {
  let res;
  try {
    res = await post("/api/workers/claim", { kinds: ["external"], worker: name, wait: 20 },
                     workerToken);
  } catch (err) {
    console.error(`claim: ${err.message}`);
    await sleep(2000);
    continue;
  }
  if (res.status === 204) continue;
  if (res.status !== 200) { console.error(`claim: HTTP ${res.status}`); await sleep(2000); continue; }
  const job = await res.json();
  console.log(`claimed ${job.jobId}`);
  try { await run(job); } catch (err) { console.error(`job ${job.jobId}: ${err.message}`); }
  if (process.env.ONCE) break;
}
