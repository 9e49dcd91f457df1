/* Job page: the retries of a job whose kind retries (docs/kinds.md, "Retries").
 * "Attempt 2 of 4 in 27 s" counts down to the next attempt while the job waits for
 * it, and the earlier attempts' errors are listed. job.js hands each update to
 * render(); fields an update leaves out (a plain progress report) are kept.
 * Everything shown is set as text, never HTML. */
(function () {
  "use strict";
  var root = document.getElementById("job");
  var line = document.getElementById("attempt-line");
  var box = document.getElementById("attempts-box");
  var list = document.getElementById("attempts");
  if (!root || !line || !box || !list || !window.JobcastTime || !window.JobcastProtocol) {
    return;
  }
  var P = window.JobcastProtocol;
  var T = window.JobcastTime;
  var now = T.clock(parseFloat(line.getAttribute("data-server-now")));
  var attempt = parseInt(line.getAttribute("data-attempt"), 10) || null;
  var most = parseInt(line.getAttribute("data-max-attempts"), 10) || null;
  var retryAt = parseFloat(line.getAttribute("data-retry-at")) || null;
  var state = root.getAttribute("data-state");
  var timer = null;

  function waiting() {
    return retryAt !== null && state === P.states.scheduled;
  }

  function inWords(seconds) {
    return seconds < 60 ? seconds + " s" : T.duration(seconds);
  }

  function show() {
    line.hidden = !most;
    if (!most) { return; }
    var text = "Attempt " + attempt + " of " + most;
    if (waiting()) {
      var left = Math.round(retryAt - now());
      text += left > 0 ? " in " + inWords(left) : " starting…";
    }
    line.textContent = text;
    if (waiting() && timer === null) {
      timer = setInterval(show, 1000);
    } else if (!waiting() && timer !== null) {
      clearInterval(timer);
      timer = null;
    }
  }

  function listAttempts(attempts) {
    while (list.firstChild) { list.removeChild(list.firstChild); }
    attempts.forEach(function (failed) {
      var item = document.createElement("li");
      var when = document.createElement("time");
      when.setAttribute("datetime", String(failed.endedAt));
      when.textContent = String(failed.endedAt);
      item.appendChild(document.createTextNode("Attempt " + failed.attempt + " failed at "));
      item.appendChild(when);
      item.appendChild(document.createTextNode(": " + failed.error));
      list.appendChild(item);
    });
    box.hidden = attempts.length === 0;
  }

  function render(p) {
    state = String(p.state);
    if (typeof p.maxAttempts === "number" && typeof p.attempt === "number") {
      attempt = p.attempt;
      most = p.maxAttempts;
    }
    var at = typeof p.retryAt === "string" ? Date.parse(p.retryAt) : NaN;
    retryAt = isNaN(at) ? null : at / 1000;
    if (Array.isArray(p.attempts)) { listAttempts(p.attempts); }
    show();
  }

  window.JobcastRetries = { render: render };
  show();
})();
