/* Snippet page: replace the escaped source with the highlighted HTML when ready.
 * Push first: on every (re)connect the page emits `subscribe` {snippetId}; the
 * server joins it to the snippet's room and then sends `highlight` at once if
 * the result is already stored (else the job's state). While Socket.IO is not
 * connected the page polls GET /snippets/<id>/highlighted (204 until ready).
 * Only the server's Pygments output is inserted as HTML; messages are text. */
(function () {
  "use strict";
  var root = document.getElementById("snippet");
  if (!root || !window.JobcastProtocol) { return; }
  var snippetId = root.getAttribute("data-snippet-id");
  var pollUrl = root.getAttribute("data-highlighted-url");
  var code = document.getElementById("code");
  var stateEl = document.getElementById("state");
  var messageEl = document.getElementById("message");
  var conn = document.getElementById("connection");
  var connText = document.getElementById("connection-text");
  var languageEl = document.getElementById("language");
  var P = window.JobcastProtocol;
  /* Page states beyond the job states: "highlighted" and "expired". */
  var ended = { highlighted: true, expired: true };
  Object.keys(P.terminal).forEach(function (s) { if (s !== P.states.succeeded) { ended[s] = true; } });
  var done = root.getAttribute("data-state") in ended;
  var socket = null;
  var live = false; /* subscribed over Socket.IO: no polling needed */
  var pollTimer = null;
  var pollDelay = 1000;

  function setConnection(status, text) {
    conn.setAttribute("data-status", status);
    connText.textContent = text;
  }

  function setState(state, message) {
    stateEl.textContent = state;
    messageEl.textContent = message ? ": " + message : "";
    root.setAttribute("data-state", state);
  }

  function finish(text) {
    done = true;
    if (pollTimer !== null) { clearTimeout(pollTimer); pollTimer = null; }
    if (socket) { socket.disconnect(); }
    setConnection("done", text);
  }

  function showHighlighted(p) {
    if (done || !p || p.snippetId !== snippetId || typeof p.html !== "string") { return; }
    code.innerHTML = p.html; /* Pygments output, produced and escaped by our worker */
    if (typeof p.lexer === "string" && p.lexer) { languageEl.textContent = p.lexer; }
    setState("highlighted", "");
    finish("highlighted");
  }

  function onProgress(p) {
    if (done || !p || p.snippetId !== snippetId) { return; }
    if (p.state === P.states.succeeded) { poll(); return; } /* `highlight` normally came first */
    setState(p.state, p.message);
    if (p.state in ended) { finish("highlighting ended: " + p.state); }
  }

  function schedule() {
    if (done || pollTimer !== null) { return; }
    pollTimer = setTimeout(function () { pollTimer = null; poll(); }, pollDelay);
    pollDelay = Math.min(pollDelay * 1.5, 10000);
  }

  function poll() {
    if (done) { return; }
    fetch(pollUrl, { cache: "no-store", headers: { Accept: "text/html" } }).then(function (resp) {
      if (resp.status === 200) {
        return resp.text().then(function (html) {
          showHighlighted({ snippetId: snippetId, html: html,
                            lexer: resp.headers.get("X-Lexer") || "" });
        });
      }
      if (resp.status === 204) {
        var state = resp.headers.get("X-Job-State");
        if (state && state in ended) {
          setState(state, "");
          finish("highlighting ended: " + state);
          return;
        }
        if (state) { setState(state, ""); }
      } else if (resp.status === 404) {
        setState("expired", "");
        finish("snippet not found");
        return;
      }
      if (!live) { schedule(); }
    }, function () {
      if (!live) { schedule(); }
    });
  }

  if (done) { return; }
  if (typeof io === "undefined") {
    setConnection("polling", "polling");
    poll();
    return;
  }
  socket = io({ query: P.watchQuery("snippet") });
  socket.on(P.events.highlight, showHighlighted);
  socket.on(P.events.updateProgress, onProgress);
  socket.on("connect", function () {
    if (pollTimer !== null) { clearTimeout(pollTimer); pollTimer = null; }
    pollDelay = 1000;
    setConnection("live", "connected");
    socket.emit(P.events.subscribe, { snippetId: snippetId }, function (ack) {
      live = Boolean(ack && ack.ok);
      if (!live) {
        setConnection("polling", "polling (" + (ack ? ack.error : "no answer") + ")");
        poll();
      }
    });
  });
  socket.on("disconnect", function (reason) {
    live = false;
    if (done) { return; }
    /* The server closes a connection that joined no room (its subscribe was
     * refused): the page goes on polling. */
    if (reason === "io server disconnect") {
      setConnection("polling", "polling");
    } else {
      setConnection("reconnecting", "reconnecting… (polling meanwhile)");
    }
    schedule();
  });
  socket.on("connect_error", function (err) {
    if (done) { return; }
    setConnection(socket.active ? "reconnecting" : "polling",
                  socket.active ? "reconnecting… (polling meanwhile)" : "polling (" + err.message + ")");
    schedule();
  });
})();
