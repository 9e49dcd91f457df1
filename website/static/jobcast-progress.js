/* <jobcast-progress job="<id>" token="<watch token>" [log] [origin="https://jobs.example.com"]>
 *
 * One job's progress on any page (docs/embedding.md): the bar, "n of total", the
 * state, the message and, with `log`, the log, live over Socket.IO; it polls the
 * JSON state while Socket.IO is unavailable or refused, as the job page does
 * (website/static/js/job.js). The token is a watch token (POST
 * /api/jobs/<id>/watch-token): it reads this job and nothing else.
 *
 * - The wire names (events, states) come from the site (GET /api/protocol, the
 *   one definition in shared/protocol.py), never spelled here.
 * - The Socket.IO client is the site's vendored one, loaded from the same origin
 *   as this script (so the two never disagree on the protocol, and the page needs
 *   no copy of its own); the page's own `io`, if any, is left as it was.
 * - Everything is in an open shadow root, styled by CSS custom properties
 *   (--jobcast-*) and ::part()s; text is set as text, never HTML.
 * - Events (bubbling, composed): `jobcast-update` (detail: the state) and
 *   `jobcast-refused` (detail: {status}) when the token no longer reads the job
 *   (expired, or not this job's): give the element a new `token` to go on.
 */
(function () {
  "use strict";
  if (!window.customElements || window.customElements.get("jobcast-progress")) { return; }

  var NAME = "jobcast-progress.js";
  var MAX_LINES = 500; /* log lines kept in the element */
  var POLL_MS = 2000;

  function scriptOrigin() {
    var el = document.currentScript;
    if (!el || !el.src) {
      el = Array.prototype.filter.call(document.getElementsByTagName("script"), function (s) {
        return s.src && s.src.split("?")[0].slice(-NAME.length) === NAME;
      })[0];
    }
    return el ? new URL(el.src, location.href).origin : location.origin;
  }
  var DEFAULT_ORIGIN = scriptOrigin();

  /* One contract and one Socket.IO client per site origin, shared by the elements. */
  var contracts = {};
  var clients = {};

  function contractOf(origin) {
    if (!contracts[origin]) {
      contracts[origin] = fetch(origin + "/api/protocol", { credentials: "omit" })
        .then(function (resp) {
          if (!resp.ok) { throw new Error("HTTP " + resp.status); }
          return resp.json();
        })
        .then(function (data) {
          var terminal = {};
          data.terminal.forEach(function (name) { terminal[name] = true; });
          return { events: data.events, states: data.states, terminal: terminal,
                   logStart: data.logStart };
        });
      contracts[origin].catch(function () { delete contracts[origin]; });
    }
    return contracts[origin];
  }

  function clientOf(origin) {
    if (!clients[origin]) {
      clients[origin] = new Promise(function (resolve) {
        var had = Object.prototype.hasOwnProperty.call(window, "io");
        var before = window.io;
        var el = document.createElement("script");
        el.src = origin + "/static/vendor/socket.io.min.js";
        el.crossOrigin = "anonymous";
        el.async = true;
        function done(io) {
          if (had) { window.io = before; } else { try { delete window.io; } catch (e) { window.io = undefined; } }
          resolve(typeof io === "function" ? io : null);
        }
        el.onload = function () { done(window.io); };
        el.onerror = function () { done(null); }; /* polling only */
        document.head.appendChild(el);
      });
    }
    return clients[origin];
  }

  function logKey(id) {
    var parts = String(id).split("-");
    return [Number(parts[0]) || 0, Number(parts[1]) || 0];
  }
  function logCmp(a, b) {
    var x = logKey(a), y = logKey(b);
    return x[0] - y[0] || x[1] - y[1];
  }

  var STYLE = [
    ":host { display: block; font: var(--jobcast-font, inherit); color: var(--jobcast-color, inherit);",
    "  --_bar: var(--jobcast-bar-color, #1a5fb4); --_track: var(--jobcast-track-color, #d5dae1);",
    "  --_ok: var(--jobcast-succeeded-color, #1d7031); --_bad: var(--jobcast-failed-color, #b3261e);",
    "  --_log-bg: var(--jobcast-log-background, #f3f4f6); --_log-fg: var(--jobcast-log-color, #1b1d21); }",
    "@media (prefers-color-scheme: dark) { :host {",
    "  --_bar: var(--jobcast-bar-color, #78aeff); --_track: var(--jobcast-track-color, #3b414a);",
    "  --_ok: var(--jobcast-succeeded-color, #5cc97a); --_bad: var(--jobcast-failed-color, #ff8a80);",
    "  --_log-bg: var(--jobcast-log-background, #16181c); --_log-fg: var(--jobcast-log-color, #e8eaed); } }",
    ":host([hidden]) { display: none; }",
    ".box { background: var(--jobcast-background, transparent); border: var(--jobcast-border, 1px solid var(--_track));",
    "  border-radius: var(--jobcast-radius, 6px); padding: var(--jobcast-padding, 0.75rem); box-sizing: border-box;",
    "  max-width: 100%; overflow-wrap: anywhere; }",
    ".head { display: flex; flex-wrap: wrap; justify-content: space-between; gap: 0.25rem 1rem; margin: 0 0 0.5rem; }",
    ".state { margin: 0; font-weight: 600; }",
    ".counts { margin: 0; font-variant-numeric: tabular-nums; }",
    ".track { height: var(--jobcast-bar-height, 0.75rem); background: var(--_track);",
    "  border-radius: var(--jobcast-radius, 6px); overflow: hidden; }",
    ".fill { height: 100%; width: 0; background: var(--_bar); transition: width 0.2s ease-out; }",
    "@media (prefers-reduced-motion: reduce) { .fill { transition: none; } }",
    ".box[data-state='succeeded'] .fill { background: var(--_ok); }",
    ".box[data-state='failed'] .fill, .box[data-state='cancelled'] .fill { background: var(--_bad); }",
    ".message { margin: 0.5rem 0 0; min-height: 1em; }",
    ".message:empty { display: none; }",
    ".connection { margin: 0.25rem 0 0; font-size: 0.85em; }",
    ".log { margin: 0.5rem 0 0; padding: 0.5rem; list-style: none; background: var(--_log-bg); color: var(--_log-fg);",
    "  font: 0.85em/1.4 var(--jobcast-mono-font, ui-monospace, monospace); max-height: var(--jobcast-log-max-height, 12rem);",
    "  overflow: auto; white-space: pre-wrap; border-radius: var(--jobcast-radius, 6px); }",
    ".log:focus-visible { outline: 2px solid var(--_bar); outline-offset: 2px; }",
    ".log[hidden] { display: none; }"
  ].join("\n");
  var sheet = null;

  function JobcastProgress() {
    return Reflect.construct(HTMLElement, [], JobcastProgress);
  }
  JobcastProgress.prototype = Object.create(HTMLElement.prototype);
  JobcastProgress.prototype.constructor = JobcastProgress;
  Object.setPrototypeOf(JobcastProgress, HTMLElement);
  Object.defineProperty(JobcastProgress, "observedAttributes", {
    get: function () { return ["job", "token", "origin", "log", "label"]; }
  });

  var proto = JobcastProgress.prototype;

  proto.build = function () {
    if (this.ui) { return; }
    var root = this.attachShadow({ mode: "open" });
    /* A constructed style sheet: no <style> element, which a strict CSP
     * (style-src without 'unsafe-inline') on the page would block. */
    if (root.adoptedStyleSheets !== undefined && window.CSSStyleSheet) {
      if (!sheet) { sheet = new CSSStyleSheet(); sheet.replaceSync(STYLE); }
      root.adoptedStyleSheets = [sheet];
    } else {
      var style = document.createElement("style");
      style.textContent = STYLE;
      root.appendChild(style);
    }
    var box = el("div", "box", "box");
    var head = el("div", "head", "head");
    var state = el("p", "state", "state");
    state.setAttribute("role", "status"); /* a polite live region: the state only */
    var counts = el("p", "counts", "counts");
    var track = el("div", "track", "track");
    track.setAttribute("role", "progressbar");
    track.setAttribute("aria-valuemin", "0");
    track.setAttribute("aria-valuemax", "100");
    track.setAttribute("aria-valuenow", "0");
    var fill = el("div", "fill", "fill");
    track.appendChild(fill);
    var message = el("p", "message", "message");
    var connection = el("p", "connection", "connection");
    var log = el("ol", "log", "log");
    log.hidden = true;
    log.tabIndex = 0; /* it scrolls: keyboard users can too */
    head.appendChild(state);
    head.appendChild(counts);
    box.appendChild(head);
    box.appendChild(track);
    box.appendChild(message);
    box.appendChild(log);
    box.appendChild(connection);
    root.appendChild(box);
    this.ui = { box: box, state: state, counts: counts, track: track, fill: fill,
                message: message, connection: connection, log: log };
    this.labels();
  };

  function el(tag, cls, part) {
    var node = document.createElement(tag);
    node.className = cls;
    node.setAttribute("part", part);
    return node;
  }

  proto.labels = function () {
    var label = this.getAttribute("label") || "Job progress";
    this.ui.track.setAttribute("aria-label", label);
    this.ui.log.setAttribute("aria-label", label + ": log");
    this.ui.log.hidden = !this.hasAttribute("log") || !this.ui.log.childNodes.length;
  };

  proto.connectedCallback = function () {
    this.build();
    this.start();
  };

  proto.disconnectedCallback = function () { this.stop(); };

  proto.attributeChangedCallback = function (name, old, value) {
    if (!this.ui || old === value) { return; }
    if (name === "log" || name === "label") { this.labels(); return; }
    if (this.isConnected) { this.start(); }
  };

  proto.stop = function () {
    this.run = (this.run || 0) + 1; /* callbacks of an earlier run do nothing */
    if (this.socket) { this.socket.disconnect(); this.socket = null; }
    if (this.pollTimer) { clearTimeout(this.pollTimer); this.pollTimer = null; }
    this.live = false;
  };

  proto.start = function () {
    this.stop();
    var run = this.run;
    var self = this;
    this.jobId = (this.getAttribute("job") || "").toLowerCase();
    this.token = this.getAttribute("token") || "";
    this.origin = (this.getAttribute("origin") || DEFAULT_ORIGIN).replace(/\/+$/, "");
    this.final = false;
    this.caughtUp = false;
    this.connection("connecting", "connecting…");
    if (!this.jobId) { this.connection("gone", "no job given"); return; }
    Promise.all([contractOf(this.origin), clientOf(this.origin)]).then(function (both) {
      if (run !== self.run) { return; }
      self.P = both[0];
      if (self.last === undefined || self.lastJob !== self.jobId) {
        self.last = self.P.logStart;
        self.lastJob = self.jobId;
        while (self.ui.log.firstChild) { self.ui.log.removeChild(self.ui.log.firstChild); }
      }
      if (both[1]) { self.connect(both[1], run); } else { self.fallBack("live updates unavailable"); }
    }, function () {
      if (run !== self.run) { return; }
      self.connection("reconnecting", "cannot reach the site; trying again");
      self.pollTimer = setTimeout(function () { if (run === self.run) { self.start(); } }, 5000);
    });
  };

  proto.connection = function (status, text) {
    this.ui.connection.setAttribute("data-status", status);
    this.ui.connection.textContent = text;
  };

  proto.connect = function (io, run) {
    var self = this;
    var P = this.P;
    var socket = io(this.origin, {
      query: { jobId: this.jobId },
      auth: function (cb) { cb({ watchToken: self.token, lastLogId: self.last }); },
      forceNew: true,
      withCredentials: false
    });
    this.socket = socket;
    socket.on(P.events.updateProgress, function (p) { if (run === self.run) { self.render(p); } });
    socket.on(P.events.jobLog, function (p) { if (run === self.run) { self.feed(p); } });
    socket.on("connect", function () {
      if (run !== self.run) { return; }
      self.live = true;
      if (self.pollTimer) { clearTimeout(self.pollTimer); self.pollTimer = null; }
      if (!self.final) { self.connection("live", "live"); }
    });
    socket.on("disconnect", function (reason) {
      if (run !== self.run) { return; }
      self.live = false;
      if (self.final) { return; }
      if (reason === "io server disconnect") { socket.connect(); }
      self.pollMeanwhile();
    });
    socket.on("connect_error", function (err) {
      if (run !== self.run) { return; }
      self.live = false;
      if (self.final) { return; }
      /* Still retrying (e.g. 503 from a full connection cap): poll meanwhile.
       * Refused by the server (unknown job, token expired): poll, which says why. */
      if (socket.active) { self.pollMeanwhile(); } else { self.fallBack("live updates refused (" + err.message + ")"); }
    });
  };

  proto.pollMeanwhile = function () {
    this.connection("reconnecting", "reconnecting… (checking every few seconds)");
    if (!this.pollTimer) { this.poll(1000, this.run); }
  };

  proto.fallBack = function (why) {
    this.connection("polling", why + "; checking every few seconds");
    if (!this.pollTimer) { this.poll(0, this.run); }
  };

  proto.read = function (path) {
    return fetch(this.origin + path, {
      headers: { Accept: "application/json", Authorization: "Bearer " + this.token },
      credentials: "omit",
      cache: "no-store"
    });
  };

  proto.poll = function (delay, run) {
    var self = this;
    if (this.final || this.live) { return; }
    this.pollTimer = setTimeout(function () {
      if (run !== self.run || self.live) { self.pollTimer = null; return; }
      self.read("/api/jobs/" + encodeURIComponent(self.jobId)).then(function (resp) {
        if (run !== self.run) { return; }
        if (resp.status === 404 || resp.status === 401) {
          self.pollTimer = null;
          self.refused(resp.status);
          return;
        }
        if (!resp.ok) { throw new Error("HTTP " + resp.status); }
        return resp.json().then(function (body) {
          if (run !== self.run || self.live) { self.pollTimer = null; return; }
          return self.catchUp(1).then(function () {
            self.render(body);
            if (!self.live && !self.final) {
              self.connection("polling", "checking every few seconds");
              self.poll(POLL_MS, run);
            } else { self.pollTimer = null; }
          });
        });
      }).catch(function () {
        if (run !== self.run) { return; }
        self.connection("reconnecting", "cannot reach the site; trying again");
        self.poll(Math.min(Math.max(delay * 2, 1000), 10000), run);
      });
    }, delay);
  };

  proto.refused = function (status) {
    this.connection("gone", "this job cannot be shown (unknown, or the token has expired)");
    if (this.socket) { this.socket.disconnect(); this.socket = null; }
    this.dispatchEvent(new CustomEvent("jobcast-refused", {
      bubbles: true, composed: true, detail: { status: status } }));
  };

  proto.render = function (p) {
    if (!p || p.jobId !== this.jobId || typeof p.progress !== "number" || this.final) { return; }
    var ui = this.ui;
    var progress = Math.max(0, Math.min(100, Math.round(p.progress)));
    var counts = typeof p.total === "number" ? p.current + " of " + p.total : "";
    ui.fill.style.width = progress + "%";
    ui.track.setAttribute("aria-valuenow", String(progress));
    ui.track.setAttribute("aria-valuetext", progress + "%" + (counts ? " (" + counts + ")" : ""));
    ui.counts.textContent = counts;
    var state = String(p.state) + (p.stage ? " (" + p.stage + ")" : "");
    if (ui.state.textContent !== state) { ui.state.textContent = state; } /* announce changes only */
    ui.message.textContent = p.message ? String(p.message) : "";
    ui.box.setAttribute("data-state", String(p.state));
    this.setAttribute("data-state", String(p.state));
    this.dispatchEvent(new CustomEvent("jobcast-update", { bubbles: true, composed: true, detail: p }));
    if (this.P.terminal[p.state]) {
      this.final = true;
      this.connection("done", "finished");
      if (this.socket) { this.socket.disconnect(); this.socket = null; }
      if (this.pollTimer) { clearTimeout(this.pollTimer); this.pollTimer = null; }
      if (!this.caughtUp) { this.caughtUp = true; this.catchUp(10); }
    }
  };

  /* Log lines, in order, each once: a batch that starts past the last line shown
   * (a gap) is read on from the log API. */
  proto.feed = function (p) {
    if (!p || p.jobId !== this.jobId || !Array.isArray(p.lines)) { return; }
    if (logCmp(p.after, this.last) > 0) { this.catchUp(5); return; }
    this.append(p.lines);
    if (p.more === true) { this.catchUp(10); } /* a replay cut short by the server's budget */
  };

  proto.append = function (lines) {
    var self = this;
    var fresh = lines.filter(function (line) { return logCmp(line.id, self.last) > 0; });
    if (!fresh.length) { return; }
    this.last = fresh[fresh.length - 1].id;
    if (!this.hasAttribute("log")) { return; }
    var box = this.ui.log;
    var follow = box.scrollTop + box.clientHeight >= box.scrollHeight - 8;
    fresh.forEach(function (line) {
      var li = document.createElement("li");
      li.textContent = String(line.text);
      box.appendChild(li);
    });
    while (box.childNodes.length > MAX_LINES) { box.removeChild(box.firstChild); }
    box.hidden = false;
    if (follow) { box.scrollTop = box.scrollHeight; }
  };

  proto.catchUp = function (pages) {
    var self = this;
    var run = this.run;
    if (!this.hasAttribute("log")) { return Promise.resolve(); }
    return this.read("/api/jobs/" + encodeURIComponent(this.jobId) + "/log?after=" +
                     encodeURIComponent(this.last))
      .then(function (resp) { return resp.ok ? resp.json() : null; })
      .then(function (page) {
        if (!page || run !== self.run) { return; }
        self.append(page.lines || []);
        if (page.more && pages > 1) { return self.catchUp(pages - 1); }
      })
      .catch(function () { /* the next poll, reconnect or batch tries again */ });
  };

  window.customElements.define("jobcast-progress", JobcastProgress);
}());
