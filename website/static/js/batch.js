/* Batch page: totals live over Socket.IO. On every (re)connect the page
 * subscribes with its batch id and gets the current totals at once (a late
 * joiner misses nothing); then "batchProgress" brings them as children change.
 * The handshake says the page comes to watch (P.watchQuery), so it may use the
 * share of the server's connection cap kept for watchers. */
(function () {
  "use strict";
  var root = document.getElementById("batch");
  if (!root || typeof io === "undefined" || !window.JobcastProtocol) { return; }
  var P = window.JobcastProtocol;
  var batchId = root.getAttribute("data-batch-id");
  var conn = document.getElementById("connection");
  var connText = document.getElementById("connection-text");

  function render(t) {
    if (!t || t.batchId !== batchId) { return; }
    var bar = document.getElementById("batch-bar");
    bar.value = t.done;
    bar.textContent = String(t.done);
    document.getElementById("batch-done").textContent = String(t.done);
    document.getElementById("batch-complete").textContent = t.complete ? ": complete" : "";
    Object.keys(t.counts).forEach(function (state) {
      var li = document.querySelector('#batch-counts li[data-state="' + state + '"] strong');
      if (li) { li.textContent = String(t.counts[state]); }
    });
  }

  var socket = io({ query: P.watchQuery("batch") });
  socket.on(P.events.batchProgress, render);
  socket.on("connect", function () {
    socket.emit(P.events.subscribe, { batchId: batchId }, function (ack) {
      conn.setAttribute("data-status", ack && ack.ok ? "live" : "refused");
      connText.textContent = ack && ack.ok ? "connected" : "refused: " + (ack && ack.error);
    });
  });
  socket.on("disconnect", function (reason) {
    /* A refused subscription joins no room: the server then closes the connection,
     * and the page keeps saying why. */
    if (reason === "io server disconnect" && conn.getAttribute("data-status") === "refused") {
      return;
    }
    conn.setAttribute("data-status", "reconnecting");
    connText.textContent = "reconnecting…";
  });
})();
