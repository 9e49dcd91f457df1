/* Job page: the live log console and the result.
 * Lines come as jobLog batches {jobId, after, lines: [{id, at, text}]}; each
 * batch names the id of the line before it. A batch that starts past the last
 * line shown waits until the lines before it arrive (the replay the server
 * sends after every (re)connect); lines already shown are skipped. So the
 * console shows every line once, in order, whatever order batches arrive in.
 * If the lines before a waiting batch never come (a push the page missed
 * without reconnecting), job.js reads them from the log API: after a second
 * of waiting, and once more when the job has ended.
 * Everything is inserted as text. job.js calls JobcastLog.feed / .result. */
(function () {
  "use strict";
  var root = document.getElementById("job");
  var box = document.getElementById("console");
  if (!root || !box || !window.JobcastProtocol) { return; }
  var P = window.JobcastProtocol;
  var empty = document.getElementById("console-empty");
  var jobId = root.getAttribute("data-job-id");
  var last = root.getAttribute("data-log-last") || P.logStart;
  var pending = {};
  var MAX_SHOWN = 5000;

  function key(id) {
    var parts = String(id).split("-");
    return [Number(parts[0]) || 0, Number(parts[1]) || 0];
  }
  function cmp(a, b) {
    var x = key(a), y = key(b);
    return x[0] - y[0] || x[1] - y[1];
  }

  function append(lines) {
    if (!lines.length) { return; }
    var follow = box.scrollTop + box.clientHeight >= box.scrollHeight - 8;
    var frag = document.createDocumentFragment();
    lines.forEach(function (line) {
      var div = document.createElement("div");
      div.setAttribute("data-id", line.id);
      div.textContent = String(line.text);
      frag.appendChild(div);
    });
    box.appendChild(frag);
    while (box.childNodes.length > MAX_SHOWN) { box.removeChild(box.firstChild); }
    if (empty) { empty.hidden = true; }
    if (follow) { box.scrollTop = box.scrollHeight; }
  }

  function feed(p) {
    if (!p || p.jobId !== jobId || !Array.isArray(p.lines)) { return; }
    pending[String(p.after)] = p.lines;
    var progressed = true;
    while (progressed) {
      progressed = false;
      Object.keys(pending).forEach(function (after) {
        if (cmp(after, last) > 0) { return; }
        var fresh = pending[after].filter(function (line) { return cmp(line.id, last) > 0; });
        delete pending[after];
        if (fresh.length) {
          last = fresh[fresh.length - 1].id;
          append(fresh);
        }
        progressed = true;
      });
    }
  }

  var resultBox = document.getElementById("result-box");
  var resultEl = document.getElementById("result");
  var download = document.getElementById("result-download");
  var link = document.getElementById("result-link");
  var resultType = root.getAttribute("data-result-type");
  var filesUrl = root.getAttribute("data-files-url");

  function result(p) {
    if (!p || p.jobId !== jobId || p.state !== P.states.succeeded || !("result" in p)) { return; }
    var value = p.result;
    if (value === null || value === undefined) { return; }
    resultEl.textContent = (resultType === "text" && typeof value === "string")
      ? value : JSON.stringify(value, null, 2);
    if (resultType === "download" && value && typeof value.file === "string") {
      link.href = filesUrl + encodeURIComponent(value.file);
      link.textContent = "Download " + value.file;
      download.hidden = false;
    }
    resultBox.hidden = false;
  }

  window.JobcastLog = {
    feed: feed,
    result: result,
    last: function () { return last; },
    /* True while a batch waits for lines before it that have not come. */
    waiting: function () { return Object.keys(pending).length > 0; }
  };
}());
