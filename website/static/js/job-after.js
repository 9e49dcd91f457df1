/* The jobs a job waits for (its `after` list) on its page: each one's words follow the
 * pushed `waitingFor` (the ids not yet succeeded), as does the summary line. Text only.
 */
(function () {
  "use strict";
  var box = document.getElementById("after-box");
  if (!box) { return; }
  var waitingState = box.getAttribute("data-waiting-state");
  var summary = document.getElementById("after-summary");
  var items = box.querySelectorAll("li[data-job-id]");

  function render(p) {
    if (!p || !Array.isArray(p.waitingFor)) { return; }
    var waiting = p.state === waitingState;
    var pending = 0;
    for (var i = 0; i < items.length; i++) {
      var id = items[i].getAttribute("data-job-id");
      var still = p.waitingFor.indexOf(id) !== -1;
      if (still) { pending += 1; }
      items[i].querySelector(".after-state").textContent =
        !still ? "done" : (waiting ? "not finished yet" : "not waited for any more");
    }
    var total = items.length;
    summary.textContent = waiting
      ? "Waiting for " + pending + " of " + total + (total === 1 ? " job" : " jobs") +
        " to succeed before it starts."
      : "It waited for " + (total === 1 ? "this job." : "these jobs.");
  }

  window.JobcastAfter = { render: render };
})();
