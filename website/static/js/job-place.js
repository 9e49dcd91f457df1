/* A queued job's place in line, in words: "4th in line, about 50 s", or "Paused by an
 * operator" (the words of shared/position.py Place.words). job.js hands it each
 * state; a state without a place (a push of the job's own change) keeps the last one
 * while the job is still queued. Set as text, never HTML. Beside it, when no worker
 * could take the job lately, the server's words for that (#no-worker). */
(function () {
  "use strict";
  var el = document.getElementById("queue-place");
  var P = window.JobcastProtocol;

  function ordinal(n) {
    var t = n % 100, s = "th";
    if (t < 10 || t > 20) { s = { 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th"; }
    return n + s;
  }

  function about(seconds) {
    if (seconds < 60) { return Math.max(seconds, 1) + " s"; }
    if (seconds < 3600) { return Math.round(seconds / 60) + " min"; }
    return Math.round(seconds / 3600) + " h";
  }

  function words(p) {
    if (p.paused === true) { return "Paused by an operator: it waits until its kind is resumed."; }
    if (typeof p.position !== "number") { return "Waiting in line."; }
    var text = ordinal(p.position) + " in line";
    if (typeof p.eta === "number") { text += ", about " + about(p.eta); }
    return text + ".";
  }

  /* "No worker has claimed <kind> jobs in the last N s" (shared/position.py), or none. */
  var noWorker = document.getElementById("no-worker");

  function showNoWorker(p) {
    if (!noWorker) { return; }
    if (p.state !== P.states.queued || p.noWorker === null) {
      noWorker.hidden = true;
      noWorker.textContent = "";
    } else if (typeof p.noWorker === "string") {
      noWorker.textContent = p.noWorker;
      noWorker.hidden = false;
    }
  }

  function show(p) {
    if (!el || !p || !P) { return; }
    showNoWorker(p);
    if (p.state !== P.states.queued) { el.hidden = true; el.textContent = ""; return; }
    if (p.position === undefined && p.paused === undefined) { return; }
    el.textContent = words(p);
    el.hidden = false;
  }

  window.JobcastPlace = { show: show, words: words };
})();
