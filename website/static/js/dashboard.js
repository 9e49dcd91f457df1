/* Dashboard: recent jobs (or a filter's), live over Socket.IO (no polling).
 * On every (re)connect the page joins the dashboard room with its signed token
 * and gets a snapshot of its page in the ack; then each job change arrives as
 * one compact "jobChanged" event. A job that enters the filter (state, kind,
 * owner) gets a row in creation order, one that leaves it loses its row; with
 * a text filter (the message is not in the event) the snapshot is asked for
 * again. Everything is inserted as text. */
(function () {
  "use strict";
  var root = document.getElementById("dashboard");
  if (!root || typeof io === "undefined" || !window.JobcastTime || !window.JobcastProtocol) {
    return;
  }
  var P = window.JobcastProtocol;
  var T = window.JobcastTime;
  var token = root.getAttribute("data-token");
  var cursor = root.getAttribute("data-cursor") || "";
  var filter = {};
  ["state", "kind", "owner", "q", "batch", "stalled"].forEach(function (name) {
    var value = root.getAttribute("data-filter-" + name);
    if (value) { filter[name] = value; }
  });
  var pageSize = parseInt(root.getAttribute("data-page-size"), 10) || 25;
  var now = T.clock(parseFloat(root.getAttribute("data-server-now")));
  var tbody = document.getElementById("job-rows");
  var conn = document.getElementById("connection");
  var connText = document.getElementById("connection-text");
  var terminal = P.terminal;
  var refreshTimer = null;
  /* The names of the API keys (owner "k-<id>"), from the owner filter's choices. */
  var keyNames = {};
  Array.prototype.forEach.call(document.querySelectorAll("#owner-keys option"), function (o) {
    keyNames[o.value] = o.getAttribute("data-name") || "";
  });

  function setConnection(status, text) {
    conn.setAttribute("data-status", status);
    connText.textContent = text;
  }

  function cell(row, cls) { return row.querySelector("td." + cls); }

  function num(row, name) { return parseFloat(row.getAttribute(name)) || null; }

  function setTimes(row) {
    var created = num(row, "data-created-at");
    var started = num(row, "data-started-at");
    var finished = num(row, "data-finished-at");
    cell(row, "age").textContent = created ? T.duration(now() - created) : "–";
    cell(row, "duration").textContent = started ? T.duration((finished || now()) - started) : "–";
  }

  function setState(row, state, stage, progress) {
    row.setAttribute("data-state", state);
    cell(row, "state").textContent = state + (stage ? " (" + stage + ")" : "");
    var bar = cell(row, "progress").querySelector("progress");
    bar.value = progress;
    bar.textContent = progress + "%";
    cell(row, "progress").querySelector("span").textContent = progress + "%";
  }

  /* The column labels, shown beside each value when rows become cards (narrow screens). */
  var COLUMNS = [["job", "Job"], ["kind", "Kind"], ["state", "State"], ["progress", "Progress"],
                 ["age", "Age"], ["duration", "Duration"], ["worker", "Worker"]];

  /* A worker's name, short (the server's form), with the full name as its title. */
  function workerName(full, short) {
    var span = document.createElement("span");
    span.title = full;
    span.textContent = short || full;
    return span;
  }

  function newRow(job) {
    var row = document.createElement("tr");
    row.setAttribute("data-job-id", job.jobId);
    row.setAttribute("data-kind", job.kind || "");
    row.setAttribute("data-owner", job.owner || "");
    COLUMNS.forEach(function (col) {
      var td = document.createElement("td");
      td.className = col[0];
      td.setAttribute("data-label", col[1]);
      row.appendChild(td);
    });
    var link = document.createElement("a");
    link.href = job.url || "/jobs/" + encodeURIComponent(job.jobId);
    link.title = String(job.jobId);
    link.textContent = String(job.jobId).slice(0, 8);
    cell(row, "job").appendChild(link);
    if (job.attempt > 1) {
      var small = document.createElement("small");
      small.textContent = " (attempt " + job.attempt + ")";
      cell(row, "job").appendChild(small);
    }
    var details = document.createElement("a");
    details.className = "details";
    details.href = "/dashboard/jobs/" + encodeURIComponent(job.jobId);
    details.setAttribute("aria-label", "Details of job " + String(job.jobId).slice(0, 8));
    details.textContent = "details";
    cell(row, "job").appendChild(document.createTextNode(" "));
    cell(row, "job").appendChild(details);
    cell(row, "kind").textContent = job.kind || "?";
    if (job.page) {  /* the page the job works for (a snippet's) */
      cell(row, "kind").appendChild(document.createTextNode(" · "));
      var pageLink = document.createElement("a");
      pageLink.href = job.page;
      pageLink.textContent = job.pageText || "page";
      cell(row, "kind").appendChild(pageLink);
    }
    if (job.owner) {  // who started it, a link to the owner's filter
      var by = document.createElement("small");
      by.className = "owner";
      var ownerLink = document.createElement("a");
      ownerLink.href = "/dashboard?owner=" + encodeURIComponent(job.owner);
      var ownerName = job.ownerName || keyNames[job.owner] || "";
      ownerLink.setAttribute("aria-label", "Jobs of owner " + (ownerName || job.owner));
      if (ownerName) { ownerLink.title = job.owner; }
      ownerLink.textContent = ownerName || job.owner;
      by.appendChild(document.createTextNode("by "));
      by.appendChild(ownerLink);
      cell(row, "kind").appendChild(document.createTextNode(" "));
      cell(row, "kind").appendChild(by);
    }
    var bar = document.createElement("progress");
    bar.max = 100;
    bar.setAttribute("aria-label", "Progress of job " + String(job.jobId).slice(0, 8));
    cell(row, "progress").appendChild(bar);
    cell(row, "progress").appendChild(document.createTextNode(" "));
    cell(row, "progress").appendChild(document.createElement("span"));
    if (job.worker) {
      cell(row, "worker").appendChild(workerName(job.worker, job.workerShort));
    } else {
      cell(row, "worker").textContent = "–";
    }
    row.setAttribute("data-created-at", job.createdAt || "");
    row.setAttribute("data-started-at", job.startedAt || "");
    row.setAttribute("data-finished-at", job.finishedAt || "");
    setState(row, job.state, job.stage, job.progress);
    setTimes(row);
    return row;
  }

  function findRow(jobId) {
    var rows = tbody.querySelectorAll("tr[data-job-id]");
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-job-id") === jobId) { return rows[i]; }
    }
    return null;
  }

  function renderSnapshot(snap) {
    if (!snap || !snap.jobs) { return; }
    now = T.clock(snap.now);
    document.getElementById("job-total").textContent = String(snap.total);
    /* Queues and workers: fleet.js renders them (templates/_fleet.html). */
    if (window.JobcastFleet) { window.JobcastFleet.render(snap.fleet); }
    while (tbody.firstChild) { tbody.removeChild(tbody.firstChild); }
    snap.jobs.forEach(function (job) { tbody.appendChild(newRow(job)); });
  }

  /* Queues and workers change with jobs; re-read them at most every 3 s. */
  function refreshSoon() {
    if (refreshTimer) { return; }
    refreshTimer = setTimeout(function () { refreshTimer = null; watch(); }, 3000);
  }

  /* Not started yet: queued, scheduled for later, or waiting for other jobs. */
  function waiting(state) {
    return state === P.states.queued || state === P.states.scheduled || state === P.states.waiting;
  }

  /* Whether a change's job passes the filter; null when only the server can tell (text). */
  function passes(p) {
    if (filter.state && p.state !== filter.state) { return false; }
    if (filter.kind && p.kind !== filter.kind) { return false; }
    if (filter.owner && (p.owner || "") !== filter.owner) { return false; }
    return filter.q || filter.batch || filter.stalled ? null : true;  /* not in the event: ask the server */
  }

  function setTotal(delta) {
    var el = document.getElementById("job-total");
    el.textContent = String(Math.max(0, (parseInt(el.textContent, 10) || 0) + delta));
  }

  /* A row for a job that entered the filter, placed by creation time (newest first). */
  function insertRow(p) {
    if (cursor) { return; }  /* an older page: newer jobs belong to the first one */
    var empty = tbody.querySelector("tr.empty");
    if (empty) { tbody.removeChild(empty); }
    var row = newRow({ jobId: p.jobId, kind: p.kind, owner: p.owner, state: p.state,
                       progress: p.progress, stage: p.stage, createdAt: p.createdAt,
                       startedAt: waiting(p.state) ? null : p.at,
                       finishedAt: terminal[p.state] ? p.at : null,
                       page: p.page || null, pageText: p.pageText || null });
    var created = p.createdAt || p.at;
    var rows = tbody.querySelectorAll("tr[data-job-id]");
    var before = null;
    for (var i = 0; i < rows.length; i++) {
      if ((num(rows[i], "data-created-at") || 0) < created) { before = rows[i]; break; }
    }
    if (!before && rows.length >= pageSize) { return; }  /* older than the whole page */
    tbody.insertBefore(row, before);
    while (tbody.children.length > pageSize) { tbody.removeChild(tbody.lastChild); }
    setTotal(1);
  }

  function onChange(p) {
    if (!p || typeof p.jobId !== "string") { return; }
    /* the overview (dashboard-overview.js) reacts to the same changes */
    document.dispatchEvent(new CustomEvent("jobcast:jobchanged", { detail: p }));
    var row = findRow(p.jobId);
    var ok = passes(p);
    if (ok === null) {  /* a text filter: the server decides (asked at most every 3 s) */
      refreshSoon();
      if (!row) { return; }
    } else if (!ok) {
      if (row) { tbody.removeChild(row); setTotal(-1); refreshSoon(); }
      return;
    }
    if (!row) {
      if (p.created || Object.keys(filter).length) { insertRow(p); refreshSoon(); }
      return;
    }
    var was = row.getAttribute("data-state");
    if (waiting(p.state)) {
      row.setAttribute("data-started-at", "");
      row.setAttribute("data-finished-at", "");
    } else if (!row.getAttribute("data-started-at")) {
      row.setAttribute("data-started-at", p.at);
    }
    if (terminal[p.state]) { row.setAttribute("data-finished-at", p.at); }
    setState(row, p.state, p.stage, p.progress);
    setTimes(row);
    if (was !== p.state) { refreshSoon(); }
  }

  function watch() {
    socket.emit(P.events.watchDashboard, { token: token, filter: filter, cursor: cursor },
                function (ack) {
      if (!ack || !ack.ok) {
        var why = ack && ack.error ? String(ack.error) : "no answer";
        setConnection("refused", "refused: " + why);
        /* Redis down or throttled: the server says so; ask again in a while (on a
         * new connection if the server closed this one, which joined no room). */
        if (/retry later|too many requests/.test(why)) {
          setTimeout(function () {
            if (socket.connected) { watch(); } else { socket.connect(); }
          }, 5000);
        }
        return;
      }
      setConnection("live", ack.error ? "connected (" + ack.error + ")" : "connected");
      renderSnapshot(ack.snapshot);
      document.dispatchEvent(new CustomEvent("jobcast:dashboardsynced"));  /* the overview too */
    });
  }

  var socket = io({ query: P.watchQuery("dashboard") });
  socket.on(P.events.jobChanged, onChange);
  socket.on("connect", watch);
  socket.on("disconnect", function (reason) {
    /* A refused watch joins no room: the server then closes the connection, and
     * the page keeps saying why. */
    if (reason === "io server disconnect" && conn.getAttribute("data-status") === "refused") {
      return;
    }
    setConnection("reconnecting", "reconnecting…");
  });
  socket.on("connect_error", function (err) {
    setConnection(socket.active ? "reconnecting" : "refused",
                  socket.active ? "reconnecting…" : "refused: " + err.message);
  });
  /* Ages and durations tick locally; nothing is fetched. */
  setInterval(function () {
    var rows = tbody.querySelectorAll("tr[data-job-id]");
    for (var i = 0; i < rows.length; i++) { setTimes(rows[i]); }
  }, 1000);
})();
