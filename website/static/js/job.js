/* Job status page: live progress over Socket.IO, with a polling fallback.
 *
 * The server joins this connection to the job's room and then sends the
 * current state on every (re)connect, so a late, reloaded or reconnected page
 * shows the state it missed. When the web process restarts, the client says
 * "reconnecting…" and reconnects by itself. When Socket.IO is unavailable (the
 * client script did not load, the server refused the connection, or a
 * handshake failed, e.g. 503 from a full connection cap), the page polls the
 * JSON state until the socket connects. A log replay the server cut short (over
 * the connection's replay budget, `more`) is read on from the log API.
 * Everything shown is set as text, never HTML.
 */
(function () {
  "use strict";
  var root = document.getElementById("job");
  if (!root || !window.JobcastProtocol) { return; }
  var P = window.JobcastProtocol;
  var jobId = root.getAttribute("data-job-id");
  var stateUrl = root.getAttribute("data-state-url");
  var bar = document.getElementById("progress-bar");
  var span = document.getElementById("progress-span");
  var stateEl = document.getElementById("state");
  var stageEl = document.getElementById("stage");
  var messageEl = document.getElementById("message");
  var countsEl = document.getElementById("counts");
  var logUrl = root.getAttribute("data-log-url");
  var conn = document.getElementById("connection");
  var connText = document.getElementById("connection-text");
  var terminal = P.terminal;
  var socket = null;
  var pollTimer = null;
  var live = false; /* connected over Socket.IO: no polling needed */
  var gapTimer = null; /* checks for log lines that never came */
  var caughtUp = false; /* the log was read to its end after the job ended */

  function finished() {
    return terminal.hasOwnProperty(root.getAttribute("data-state"));
  }

  function setConnection(status, text) {
    conn.setAttribute("data-status", status);
    connText.textContent = text;
  }

  function render(p) {
    if (!p || p.jobId !== jobId || typeof p.progress !== "number") { return; }
    /* A final state is final for this page (a retry loads the page anew). The
     * connect handler reads the state after joining the room, and a push to the
     * room can overtake that read's answer: both come before the connect is
     * acknowledged and are handed over in arrival order, the newer state first. */
    if (finished()) { return; }
    /* A place in line (the position ticker's push) is only ever about a queued job: one
     * that arrives after the job started is stale. */
    if (p.position !== undefined && root.getAttribute("data-state") !== P.states.queued) { return; }
    bar.value = p.progress;
    bar.textContent = p.progress + "%";
    span.textContent = String(p.progress);
    stateEl.textContent = String(p.state);
    stageEl.textContent = p.stage ? " (" + p.stage + ")" : "";
    messageEl.textContent = p.message ? ": " + p.message : "";
    countsEl.textContent = typeof p.total === "number" ? " (" + p.current + " of " + p.total + ")" : "";
    if (window.JobcastLog) { window.JobcastLog.result(p); }
    if (window.JobcastHeld) { window.JobcastHeld.render(p); }
    if (window.JobcastRetries) { window.JobcastRetries.render(p); }
    if (window.JobcastAfter) { window.JobcastAfter.render(p); }
    if (window.JobcastPlace) { window.JobcastPlace.show(p); }
    root.setAttribute("data-state", String(p.state));
    /* Other scripts of the page (job-stop.js) read each update from this event. */
    root.dispatchEvent(new CustomEvent("jobcast:update", { detail: p }));
    if (finished()) {
      setConnection("done", "not needed, the job has finished");
      if (socket) { socket.disconnect(); }
      if (pollTimer) { clearTimeout(pollTimer); pollTimer = null; }
      if (gapTimer) { clearInterval(gapTimer); gapTimer = null; }
      if (!caughtUp) { caughtUp = true; catchUpLog(10); }
    }
  }

  /* The log lines after the last one shown, up to `pages` pages of the log API:
   * the polling fallback's read, a gap's filling, and the catch-up at the end. */
  function catchUpLog(pages) {
    if (!window.JobcastLog || !logUrl || !window.fetch) { return Promise.resolve(); }
    var after = window.JobcastLog.last();
    return fetch(logUrl + "?after=" + encodeURIComponent(after), { cache: "no-store" })
      .then(function (resp) { return resp.ok ? resp.json() : null; })
      .then(function (page) {
        if (!page) { return; }
        window.JobcastLog.feed(page);
        if (page.more && pages > 1) { return catchUpLog(pages - 1); }
      })
      .catch(function () { /* the next tick, poll or reconnect tries again */ });
  }


  /* Fallback: read the JSON state every few seconds until the job ends. */
  function poll(delay) {
    if (finished() || live || !window.fetch || !stateUrl) { return; }
    pollTimer = setTimeout(function () {
      if (live) { pollTimer = null; return; }
      fetch(stateUrl, { headers: { Accept: "application/json" }, cache: "no-store" })
        .then(function (resp) {
          if (resp.status === 404) {
            setConnection("gone", "stopped: this job no longer exists");
            return null;
          }
          if (!resp.ok) { throw new Error("HTTP " + resp.status); }
          return resp.json().then(function (body) {
            if (live) { pollTimer = null; return; }
            pollingStatus();
            return pollLog().then(function () {
              render(body);
              poll(2000);
            });
          });
        })
        .catch(function () {
          setConnection("reconnecting", "reconnecting…");
          poll(Math.min(Math.max(delay * 2, 1000), 10000));
        });
    }, delay);
  }

  /* Polling fallback for the log: the lines after the last one shown. */
  function pollLog() { return catchUpLog(1); }

  function pollingStatus() {
    if (socket && socket.active) {
      setConnection("reconnecting", "reconnecting… (polling meanwhile)");
    } else {
      setConnection("polling", "checking every few seconds");
    }
  }

  function fallBack(why) {
    setConnection("polling", why + "; checking every few seconds");
    if (pollTimer === null) { poll(0); }
  }

  /* While the client retries by itself, poll so the page keeps up. */
  function pollMeanwhile() {
    setConnection("reconnecting", "reconnecting… (polling meanwhile)");
    if (pollTimer === null) { poll(1000); }
  }

  function stopPolling() {
    if (pollTimer) { clearTimeout(pollTimer); }
    pollTimer = null;
  }

  if (finished()) { return; }

  /* A batch that waits more than a second for the lines before it: read them. */
  var gapSeen = false;
  gapTimer = setInterval(function () {
    var waiting = window.JobcastLog ? window.JobcastLog.waiting() : false;
    if (waiting && gapSeen) { catchUpLog(5); }
    gapSeen = waiting;
  }, 1000);

  if (typeof io === "undefined") {
    fallBack("live updates unavailable");
    return;
  }

  /* On every (re)connect the server replays the log lines after lastLogId. */
  socket = io({
    query: { jobId: jobId },
    auth: function (cb) {
      cb({ lastLogId: window.JobcastLog ? window.JobcastLog.last() : P.logStart });
    }
  });
  socket.on(P.events.updateProgress, render);
  socket.on(P.events.jobLog, function (p) {
    if (!window.JobcastLog) { return; }
    window.JobcastLog.feed(p);
    /* A replay cut short by the connection's replay budget: the rest from the log API. */
    if (p && p.more === true) { catchUpLog(10); }
  });
  socket.on("connect", function () {
    live = true;
    stopPolling();
    // The state sent on connect may be handled first and already be final.
    if (!finished()) { setConnection("live", "connected"); }
  });
  socket.on("disconnect", function (reason) {
    live = false;
    if (finished()) { return; }
    // The client retries by itself, except when the server closed the session.
    if (reason === "io server disconnect") { socket.connect(); }
    pollMeanwhile();
  });
  socket.on("connect_error", function (err) {
    live = false;
    if (finished()) { return; }
    if (socket.active) {
      // The handshake failed (e.g. 503: the server's connection cap is full,
      // or the server is restarting): the client retries by itself.
      pollMeanwhile();
    } else {
      // Refused by the server (e.g. its state store is down): poll instead.
      fallBack("live updates refused (" + err.message + ")");
    }
  });
})();
