/* Job status page: live progress over Socket.IO.
 * The server joins this connection to the job's room and then sends the
 * current state on every (re)connect, so a late or reloaded page is current. */
(function () {
  "use strict";
  var root = document.getElementById("job");
  if (!root || typeof io === "undefined") { return; }
  var jobId = root.getAttribute("data-job-id");
  var bar = document.getElementById("progress-bar");
  var span = document.getElementById("progress-span");
  var stateEl = document.getElementById("state");
  var stageEl = document.getElementById("stage");
  var messageEl = document.getElementById("message");
  var conn = document.getElementById("connection");
  var connText = document.getElementById("connection-text");
  var terminal = { succeeded: true, failed: true, cancelled: true };

  function setConnection(status, text) {
    conn.setAttribute("data-status", status);
    connText.textContent = text;
  }

  function render(p) {
    if (!p || p.jobId !== jobId) { return; }
    bar.value = p.progress;
    bar.textContent = p.progress + "%";
    span.textContent = String(p.progress);
    stateEl.textContent = p.state;
    stageEl.textContent = p.stage ? " (" + p.stage + ")" : "";
    messageEl.textContent = p.message ? ": " + p.message : "";
    root.setAttribute("data-state", p.state);
    if (terminal[p.state]) {
      setConnection("done", "job finished");
      socket.disconnect();
    }
  }

  var socket = io({ query: { jobId: jobId } });
  socket.on("updateProgress", render);
  socket.on("connect", function () { setConnection("live", "connected"); });
  socket.on("disconnect", function (reason) {
    if (root.getAttribute("data-state") in terminal) { return; }
    setConnection("reconnecting", "reconnecting…");
  });
  socket.on("connect_error", function (err) {
    if (socket.active) {
      setConnection("reconnecting", "reconnecting…");
    } else {
      setConnection("refused", "refused: " + err.message);
    }
  });
})();
