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
    retryable: setOf(data.retryable),
    logStart: data.logStart,
    /* io({query: watchQuery(...)}): says in the handshake that the page comes to
     * watch a room it subscribes to on connect, so it may use the share of the
     * server's connection cap kept for watchers. */
    watchQuery: function (what) {
      var query = {};
      query[data.watchQuery] = what;
      return query;
    }
  };
}());
