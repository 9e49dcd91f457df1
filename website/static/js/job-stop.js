/* Job page: "Stopping…" once a running job was asked to stop (cancelRequested), and
 * "Stalled: no report for 6m 00s" while it sends no report (stalled, lastReportAt),
 * from each update job.js renders (its "jobcast:update" event); shared/watch.py. */
(function () {
  "use strict";
  var root = document.getElementById("job");
  var stopLine = document.getElementById("stop-line");
  var stallLine = document.getElementById("stall-line");
  var stallFor = document.getElementById("stall-for");
  var etaLine = document.getElementById("eta-line");
  if (!root || !stopLine || !stallLine || !stallFor || !window.JobcastTime || !window.JobcastProtocol) {
    return;
  }
  var P = window.JobcastProtocol;
  var T = window.JobcastTime;
  var now = T.clock(etaLine ? parseFloat(etaLine.getAttribute("data-server-now")) : 0);
  var lastReport = parseFloat(stallLine.getAttribute("data-last-report-at")) || null;
  var timer = null;

  function tick() {
    stallFor.textContent = lastReport ? T.duration(now() - lastReport) : "a while";
  }

  function show(p) {
    var running = p.state === P.states.running;
    stopLine.hidden = !(running && p.cancelRequested);
    var stalled = running && p.stalled === true;
    stallLine.hidden = !stalled;
    if (stalled) {
      var at = Date.parse(p.lastReportAt || "");
      lastReport = isNaN(at) ? null : at / 1000;
      tick();
    }
    if (stalled && !timer) { timer = setInterval(tick, 1000); }
    if (!stalled && timer) { clearInterval(timer); timer = null; }
  }

  root.addEventListener("jobcast:update", function (event) { show(event.detail || {}); });
  if (!stallLine.hidden) { timer = setInterval(tick, 1000); }
})();
