/* Queues and workers (templates/_fleet.html): rendered from the fleet snapshot that
 * each dashboard snapshot carries (dashboard.js hands it over), and from
 * GET /api/ops/fleet when none came for REFRESH_MS (a worker going gone changes no
 * job). So the page asks for at most one snapshot every few seconds. Ages and lease
 * times tick locally. Everything is inserted as text. */
(function () {
  "use strict";
  var root = document.getElementById("fleet");
  var T = window.JobcastTime;
  if (!root || !T) { return; }
  /* Half of WORKER_GONE_AFTER, 3 to 10 s: a worker going gone shows soon enough. */
  var REFRESH_MS = (parseInt(root.getAttribute("data-refresh"), 10) || 10) * 1000;
  var url = root.getAttribute("data-url");
  var dashboard = document.getElementById("dashboard");
  var token = dashboard ? dashboard.getAttribute("data-token") : "";
  var now = T.clock(parseFloat(root.getAttribute("data-server-now")));
  var timer = null;
  var FAMILIES = { rq: "RQ workers", webhooks: "webhook deliveries", external: "external workers" };

  function td(cls, label, text) {
    var cell = document.createElement("td");
    if (cls) { cell.className = cls; }
    cell.setAttribute("data-label", label);
    if (text !== undefined) { cell.textContent = text; }
    return cell;
  }

  function queueRow(q) {
    var row = document.createElement("tr");
    row.setAttribute("data-queue", q.name);
    row.setAttribute("data-family", q.family);
    var name = q.family === "external"
      ? q.kind + (q.priority !== "normal" ? " (" + q.priority + ")" : "") : q.name;
    row.appendChild(td("queue-name", "Queue", name));
    row.appendChild(td("queue-family", "Runs on", FAMILIES[q.family] || q.family));
    row.appendChild(td("queue-depth", "Waiting", String(q.depth)));
    return row;
  }

  function workerRow(w) {
    var row = document.createElement("tr");
    row.setAttribute("data-worker", w.name);
    row.setAttribute("data-family", w.family);
    row.setAttribute("data-status", w.status);
    row.setAttribute("data-last-seen", String(w.lastSeen));
    row.setAttribute("data-lease-until", w.leaseUntil ? String(w.leaseUntil) : "");
    var nameCell = td("", "Worker");
    var span = document.createElement("span");
    span.className = "worker-name";
    span.title = w.name;
    span.textContent = w.short || w.name;
    nameCell.appendChild(span);
    row.appendChild(nameCell);
    row.appendChild(td("worker-family", "Type", w.family === "rq" ? "RQ" : "external"));
    row.appendChild(td("worker-status", "Status", w.status));
    var job = td("worker-job", "Job");
    if (w.job) {
      var link = document.createElement("a");
      link.href = "/jobs/" + encodeURIComponent(w.job);
      link.title = w.job;
      link.textContent = String(w.job).slice(0, 8);
      job.appendChild(link);
    } else {
      job.textContent = "–";
    }
    row.appendChild(job);
    row.appendChild(td("worker-lease", "Lease"));
    row.appendChild(td("worker-seen", "Last seen"));
    setTimes(row);
    return row;
  }

  function setTimes(row) {
    var seen = parseFloat(row.getAttribute("data-last-seen"));
    var lease = parseFloat(row.getAttribute("data-lease-until"));
    var leaseCell = row.querySelector("td.worker-lease");
    var seenCell = row.querySelector("td.worker-seen");
    if (leaseCell) { leaseCell.textContent = lease ? T.duration(lease - now()) + " left" : "–"; }
    if (seenCell && seen) { seenCell.textContent = T.duration(now() - seen) + " ago"; }
  }

  function fill(tbody, rows, empty, columns) {
    while (tbody.firstChild) { tbody.removeChild(tbody.firstChild); }
    rows.forEach(function (row) { tbody.appendChild(row); });
    if (!rows.length && empty) {
      var tr = document.createElement("tr");
      tr.className = "empty";
      var cell = document.createElement("td");
      cell.colSpan = columns;
      cell.textContent = empty;
      tr.appendChild(cell);
      tbody.appendChild(tr);
    }
  }

  function render(snap) {
    if (!snap || !snap.queues || !snap.workers) { return; }
    now = T.clock(snap.now);
    document.getElementById("queue-depth").textContent = String(snap.queueDepth);
    document.getElementById("worker-count").textContent = String(snap.workersOnline);
    fill(document.getElementById("queue-rows"), snap.queues.map(queueRow), "", 3);
    fill(document.getElementById("workers"), snap.workers.map(workerRow), "No worker seen.", 6);
    schedule();
  }

  function refresh() {
    timer = null;
    if (document.visibilityState === "hidden") { schedule(); return; }
    fetch(url, { credentials: "same-origin", cache: "no-store",
                 headers: { "Accept": "application/json", "X-Dashboard-Token": token || "" } })
      .then(function (resp) { return resp.ok ? resp.json() : null; })
      .then(function (snap) { if (snap) { render(snap); } else { schedule(); } },
            function () { schedule(); });
  }

  /* The next read, REFRESH_MS after the last snapshot (whichever brought it). */
  function schedule() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  setInterval(function () {
    var rows = document.querySelectorAll("#workers tr[data-worker]");
    for (var i = 0; i < rows.length; i++) { setTimes(rows[i]); }
  }, 1000);
  schedule();
  window.JobcastFleet = { render: render };
})();
