/* Job status page: the concurrency limit that holds a queued job, in words.
 *
 * A pushed or polled state carries `heldBy` ({limit, running, key, value, text})
 * while the job's kind's concurrency limit holds it back; the line shows its
 * text and hides once a state comes without it (the job took a free slot).
 * Set as text, never HTML. job.js calls render for every state it shows.
 */
(function () {
  "use strict";
  var line = document.getElementById("held-line");
  var text = document.getElementById("held-text");
  window.JobcastHeld = {
    render: function (p) {
      if (!line || !text) { return; }
      var held = p && p.heldBy && typeof p.heldBy.text === "string" ? p.heldBy.text : "";
      text.textContent = held;
      line.hidden = !held;
    }
  };
})();
