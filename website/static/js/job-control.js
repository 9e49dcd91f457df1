/* Job page extras: the ETA and the cancel / retry buttons.
 * job.js renders each update into #job (data-state) and #progress-span; this
 * script watches those and derives the ETA from the rate observed so far. */
(function () {
  "use strict";
  var root = document.getElementById("job");
  var etaLine = document.getElementById("eta-line");
  var etaEl = document.getElementById("eta");
  var progressEl = document.getElementById("progress-span");
  var cancelForm = document.getElementById("cancel-form");
  var retryForm = document.getElementById("retry-form");
  if (!root || !etaLine || !etaEl || !progressEl || !window.JobcastTime || !window.JobcastProtocol) {
    return;
  }
  var P = window.JobcastProtocol;
  var T = window.JobcastTime;
  var now = T.clock(parseFloat(etaLine.getAttribute("data-server-now")));
  var startedAt = parseFloat(etaLine.getAttribute("data-started-at")) || null;

  function update() {
    var state = root.getAttribute("data-state");
    var progress = parseInt(progressEl.textContent, 10) || 0;
    if (state === P.states.queued) { startedAt = null; }
    if (state === P.states.running && !startedAt) { startedAt = now(); }
    if (cancelForm) { cancelForm.hidden = !P.cancellable[state]; }
    if (retryForm) { retryForm.hidden = !P.retryable[state]; }
    etaLine.hidden = state !== P.states.running;
    var left = T.eta(startedAt, progress, now());
    etaEl.textContent = left === null ? "working it out…" : "about " + T.duration(left);
  }

  if (window.MutationObserver) {
    var observer = new MutationObserver(update);
    observer.observe(root, { attributes: true, attributeFilter: ["data-state"] });
    observer.observe(progressEl, { childList: true, characterData: true, subtree: true });
  }
  update();
})();
