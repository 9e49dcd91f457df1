/* Durations and ETAs, formatted like website/timefmt.py. */
(function () {
  "use strict";

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds)) { return "–"; }
    var total = Math.max(Math.round(seconds), 0);
    if (total < 60) { return total + "s"; }
    var minutes = Math.floor(total / 60), secs = total % 60;
    if (minutes < 60) { return minutes + "m " + pad(secs) + "s"; }
    var hours = Math.floor(minutes / 60);
    minutes = minutes % 60;
    if (hours < 24) { return hours + "h " + pad(minutes) + "m"; }
    return Math.floor(hours / 24) + "d " + pad(hours % 24) + "h";
  }

  /* Seconds left at the rate seen so far; null when it cannot be told. */
  function eta(startedAt, progress, now) {
    if (!startedAt || !(progress > 0 && progress < 100)) { return null; }
    var elapsed = now - startedAt;
    if (elapsed <= 0) { return null; }
    return elapsed * (100 - progress) / progress;
  }

  /* Server time (epoch seconds) from the offset measured when the page loaded. */
  function clock(serverNow) {
    var offset = serverNow ? serverNow - Date.now() / 1000 : 0;
    return function () { return Date.now() / 1000 + offset; };
  }

  window.JobcastTime = { duration: duration, eta: eta, clock: clock };
})();
