/* The wire names (events, states) the page scripts use, from the server's one
 * definition (shared/protocol.py browser_contract), rendered into the page as
 * JSON. Scripts read window.JobcastProtocol instead of spelling names. */
(function () {
  "use strict";
  var el = document.getElementById("jobcast-protocol");
  var data = el ? JSON.parse(el.textContent) : null;
  if (!data) { return; }
  function setOf(list) {
    var out = {};
    list.forEach(function (name) { out[name] = true; });
    return out;
  }
  window.JobcastProtocol = {
    events: data.events,
    states: data.states,
    terminal: setOf(data.terminal),
    cancellable: setOf(data.cancellable),
    retryable: setOf(data.retryable)
  };
}());
