/* The dashboard's overview (website/templates/_overview.html): state tabs' counts,
 * jobs finished and queue depth over the last hour (or day) drawn with uPlot, and
 * the per-kind table. The page comes with a snapshot; after that, the dashboard's
 * jobChanged events (relayed by dashboard.js as "jobcast:jobchanged") count a job
 * that ended in the current bucket at once, and ask for a fresh snapshot
 * (GET /api/ops/overview) at most once every refreshSeconds (5 s), and every 30 s
 * when nothing happens (the window moves on). Everything is inserted as text. */
(function () {
  "use strict";
  var root = document.getElementById("overview");
  if (!root || !window.JobcastTime || !window.JobcastProtocol) { return; }
  var T = window.JobcastTime;
  var S = window.JobcastProtocol.states;
  var url = root.getAttribute("data-url");
  var snap = JSON.parse(root.getAttribute("data-snapshot"));
  var windowName = snap.window;
  var gap = (snap.refreshSeconds || 5) * 1000;
  var IDLE = 30000;
  var lastAsked = Date.now();  /* the page's own snapshot counts as one */
  var timer = null;
  var busy = false;
  var again = false;
  var plots = { finished: null, depth: null };
  var ENDS = window.JobcastProtocol.terminal;
  var WINDOW_TEXT = { "1h": "last hour", "24h": "last 24 hours" };

  function $(id) { return document.getElementById(id); }

  function text(el, value) { if (el) { el.textContent = value; } }

  function secs(v) {
    if (v === null || v === undefined) { return "–"; }
    if (v < 1) { return Math.round(v * 1000) + " ms"; }
    if (v < 60) { return v.toFixed(1) + " s"; }
    return T.duration(v);
  }

  function rate(v) { return v === null || v === undefined ? "–" : (v * 100).toFixed(1) + "%"; }

  function count(n) { return n >= snap.countLimit ? n + "+" : String(n); }

  function clock(at) {
    var d = new Date(at * 1000);
    var hh = d.getHours(), mm = d.getMinutes();
    return (hh < 10 ? "0" : "") + hh + ":" + (mm < 10 ? "0" : "") + mm;
  }

  function sum(list) { return list.reduce(function (a, b) { return a + b; }, 0); }

  function color(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
  }

  /* uPlot options: time on x, counts on y, colours from the page's (light or dark) theme. */
  function options(width, series) {
    var fg = color("--fg"), muted = color("--muted");
    var axis = { stroke: fg, grid: { stroke: muted, width: 0.5 }, ticks: { stroke: muted, width: 0.5 } };
    return {
      width: width, height: 170, legend: { show: false }, cursor: { show: false },
      scales: { x: { time: true }, y: { range: function (u, lo, hi) { return [0, Math.max(hi, 1)]; } } },
      axes: [axis, Object.assign({ size: 40 }, axis)],
      series: [{}].concat(series)
    };
  }

  function bars(stroke) {
    return { fill: stroke, stroke: stroke, width: 0,
             paths: uPlot.paths.bars({ size: [0.8, 24], gap: 1 }), points: { show: false } };
  }

  function data() {
    var s = snap.series;
    var total = s.succeeded.map(function (ok, i) { return ok + s.failed[i]; });
    /* stacked: the failed bar reaches succeeded + failed, the succeeded one drawn over it */
    return { finished: [s.at, total, s.succeeded], depth: [s.at, s.depth] };
  }

  function draw() {
    if (typeof uPlot === "undefined") { return; }
    var d = data();
    var box = $("finished-plot"), box2 = $("depth-plot");
    var width = Math.max(box.clientWidth, 200);
    if (plots.finished && plots.finished.width === width) {
      plots.finished.setData(d.finished);
      plots.depth.setData(d.depth);
      return;
    }
    if (plots.finished) { plots.finished.destroy(); plots.depth.destroy(); }
    plots.finished = new uPlot(options(width, [
      Object.assign({ label: S.failed }, bars(color("--bad"))),
      Object.assign({ label: S.succeeded }, bars(color("--ok")))]), d.finished, box);
    plots.depth = new uPlot(options(Math.max(box2.clientWidth, 200), [
      { label: S.queued, stroke: color("--accent"), width: 2, points: { show: false },
        paths: uPlot.paths.stepped({ align: 1 }) }]), d.depth, box2);
  }

  /* The text equivalents: one-line summaries and the table of the busy buckets. */
  function describe() {
    var s = snap.series, when = WINDOW_TEXT[snap.window] || snap.window;
    var ended = { succeeded: sum(s.succeeded), failed: sum(s.failed), cancelled: sum(s.cancelled) };
    var line = ended.succeeded + " succeeded, " + ended.failed + " failed" +
      (ended.cancelled ? ", " + ended.cancelled + " cancelled" : "") + " in the " + when + ".";
    var busiest = -1;
    s.at.forEach(function (at, i) {
      if (s.succeeded[i] + s.failed[i] > 0 &&
          (busiest < 0 || s.succeeded[i] + s.failed[i] > s.succeeded[busiest] + s.failed[busiest])) {
        busiest = i;
      }
    });
    if (busiest >= 0) {
      line += " Busiest: " + (s.succeeded[busiest] + s.failed[busiest]) + " from " + clock(s.at[busiest]) + ".";
    }
    text($("finished-summary"), line);
    text($("depth-summary"), snap.queueDepth + " queued now; peak " + Math.max.apply(null, s.depth.concat([0])) +
         " in the " + when + ".");
    var tbody = $("history-rows");
    while (tbody.firstChild) { tbody.removeChild(tbody.firstChild); }
    for (var i = s.at.length - 1; i >= 0; i--) {
      if (!(s.succeeded[i] || s.failed[i] || s.depth[i])) { continue; }
      var tr = document.createElement("tr");
      [["From", clock(s.at[i])], ["Succeeded", s.succeeded[i]], ["Failed", s.failed[i]],
       ["Queue depth", s.depth[i]]].forEach(function (c) {
        var td = document.createElement("td");
        td.setAttribute("data-label", c[0]);
        td.textContent = String(c[1]);
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    }
    var bucket = snap.bucketSeconds >= 900 ? "15 minutes" : "minute";
    Array.prototype.forEach.call(root.querySelectorAll(".bucket-name"), function (el) { el.textContent = bucket; });
    Array.prototype.forEach.call(root.querySelectorAll(".window-name"), function (el) { el.textContent = when; });
  }

  function cell(row, cls) { return row.querySelector("td." + cls); }

  function kindRow(k) {
    var row = $("kind-rows").querySelector('tr[data-kind="' + CSS.escape(k.kind) + '"]');
    if (row) { return row; }
    row = document.createElement("tr");  /* a kind that is only in the history now */
    row.setAttribute("data-kind", k.kind);
    [["kind", "Kind"], [S.queued, "Queued"], [S.running, "Running"], [S.succeeded, "Succeeded"],
     [S.failed, "Failed"], ["failure-rate", "Failure rate"], ["p50", "p50"], ["p95", "p95"],
     ["last-failure", "Last failure"], ["runs", "Runs"]].forEach(function (c) {
      var td = document.createElement("td");
      td.className = c[0];
      td.setAttribute("data-label", c[1]);
      row.appendChild(td);
    });
    var link = document.createElement("a");
    link.href = k.list;
    link.setAttribute("aria-label", "Jobs of kind " + k.kind);
    link.textContent = k.kind;
    cell(row, "kind").appendChild(link);
    cell(row, "runs").textContent = "–";
    $("kind-rows").appendChild(row);
    return row;
  }

  function setPaused(row, paused) {
    row.setAttribute("data-paused", paused ? "1" : "0");
    var state = row.querySelector(".run-state"), form = row.querySelector("form"), name = row.getAttribute("data-kind");
    if (!state || !form) { return; }
    while (state.firstChild) { state.removeChild(state.firstChild); }
    if (paused) {
      var strong = document.createElement("strong");
      strong.textContent = "paused";
      state.appendChild(strong);
      state.appendChild(document.createTextNode(": its jobs wait"));
    } else {
      state.textContent = S.running;
    }
    form.action = form.action.replace(/\/(pause|resume)$/, paused ? "/resume" : "/pause");
    var button = form.querySelector("button");
    button.textContent = paused ? "Resume" : "Pause";
    button.setAttribute("aria-label", (paused ? "Resume" : "Pause") + " kind " + name);
  }

  function renderKinds() {
    snap.kinds.forEach(function (k) {
      var row = kindRow(k);
      text(cell(row, S.queued), count(k.queued));
      text(cell(row, S.running), count(k.running));
      text(cell(row, S.succeeded), String(k.succeeded));
      text(cell(row, S.failed), String(k.failed));
      text(cell(row, "failure-rate"), rate(k.failureRate));
      text(cell(row, "p50"), secs(k.p50));
      text(cell(row, "p95"), secs(k.p95));
      var last = cell(row, "last-failure");
      while (last.firstChild) { last.removeChild(last.firstChild); }
      if (k.lastFailure && k.lastFailure.jobId) {
        var a = document.createElement("a");
        a.href = "/dashboard/jobs/" + encodeURIComponent(k.lastFailure.jobId);
        a.textContent = k.lastFailure.message || "(no message)";
        if (k.lastFailure.at) { a.title = "at " + new Date(k.lastFailure.at * 1000).toLocaleString(); }
        last.appendChild(a);
      } else {
        last.textContent = "–";
      }
      if (String(k.paused ? 1 : 0) !== row.getAttribute("data-paused")) { setPaused(row, k.paused); }
    });
  }

  function renderTabs() {
    Object.keys(snap.states).forEach(function (state) {
      text(root.querySelector('[data-count-state="' + state + '"]'), String(snap.states[state]));
    });
  }

  function render() {
    renderTabs();
    draw();
    describe();
    renderKinds();
    root.setAttribute("data-updated", String(snap.now));
  }

  function ask() {
    timer = null;
    busy = true;
    lastAsked = Date.now();
    fetch(url + "?window=" + encodeURIComponent(windowName),
          { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (fresh) {
        if (fresh && fresh.series) { snap = fresh; render(); }
      })
      .catch(function () { /* offline: the next change or the idle timer asks again */ })
      .then(function () {
        busy = false;
        if (again) { again = false; askSoon(); }
      });
  }

  /* At most one snapshot every `gap` ms, whatever the number of changes. */
  function askSoon() {
    if (busy) { again = true; return; }
    if (timer) { return; }
    timer = setTimeout(ask, Math.max(0, lastAsked + gap - Date.now()));
  }

  /* What an event says at once: a job that ended counts in the current bucket. */
  function onChange(ev) {
    var p = ev.detail;
    if (p && ENDS[p.state] && snap.series[p.state]) {
      var last = snap.series.at.length - 1;
      snap.series[p.state][last] += 1;
      snap.kinds.forEach(function (k) {
        if (k.kind === p.kind) {
          k[p.state] += 1;
          k.failureRate = k.succeeded + k.failed ? k.failed / (k.succeeded + k.failed) : null;
        }
      });
      redrawSoon();
    }
    askSoon();
  }

  /* Many ends a second: the counts move at once, the drawing once a second at most. */
  var redrawTimer = null;
  function redrawSoon() {
    if (redrawTimer) { return; }
    redrawTimer = setTimeout(function () {
      redrawTimer = null;
      draw();
      describe();
      renderKinds();
    }, 1000);
  }

  Array.prototype.forEach.call(root.querySelectorAll(".window-switch button"), function (button) {
    button.addEventListener("click", function () {
      windowName = button.getAttribute("data-window");
      Array.prototype.forEach.call(root.querySelectorAll(".window-switch button"), function (b) {
        b.setAttribute("aria-pressed", b === button ? "true" : "false");
      });
      askSoon();
    });
  });
  root.querySelector(".window-switch").hidden = false;
  document.addEventListener("jobcast:jobchanged", onChange);
  document.addEventListener("jobcast:dashboardsynced", askSoon);
  setInterval(function () { if (Date.now() - lastAsked >= IDLE) { askSoon(); } }, IDLE / 3);
  var resized = null;
  window.addEventListener("resize", function () {
    clearTimeout(resized);
    resized = setTimeout(draw, 200);
  });
  if (window.matchMedia) {  /* light <-> dark: redraw in the new colours */
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", function () {
      if (plots.finished) { plots.finished.destroy(); plots.depth.destroy(); plots.finished = null; }
      draw();
    });
  }
  render();
})();
