// nightcrier dashboard: the live parts. Everything else works without JavaScript.
"use strict";
(function () {
  // The agent's output: server-sent events from the byte offset the page was rendered with.
  // The browser resumes after a reconnect with Last-Event-ID (the byte offset of the last
  // chunk), so nothing is lost or repeated.
  var MAX_CHARS = 1000000;
  var log = document.getElementById("live-log");
  var state = document.getElementById("live-state");
  if (log && window.EventSource && log.getAttribute("data-open") === "true") {
    var url = log.getAttribute("data-stream") + "?from=" + encodeURIComponent(log.getAttribute("data-offset"));
    var source = new EventSource(url);
    var say = function (text) { if (state) { state.textContent = text; } };
    var append = function (text) {
      var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.appendChild(document.createTextNode(text));
      if (log.textContent.length > MAX_CHARS) {
        log.textContent = log.textContent.slice(-MAX_CHARS);
      }
      if (atBottom) { log.scrollTop = log.scrollHeight; }
    };
    source.addEventListener("open", function () { say("(live)"); });
    source.addEventListener("error", function () { say("(reconnecting…)"); });
    source.addEventListener("chunk", function (e) { append(JSON.parse(e.data)); });
    source.addEventListener("reset", function () {
      log.textContent = "";
      say("(live: a new attempt started)");
    });
    source.addEventListener("end", function (e) {
      source.close();
      say("(finished: " + e.data + ")");
    });
  }

  // The first page of the incident list refreshes its rows every few seconds.
  var rows = document.getElementById("incident-rows");
  var refresh = rows && rows.getAttribute("data-refresh");
  if (refresh && window.fetch) {
    var busy = false;
    window.setInterval(function () {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(refresh, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html !== null) {
            var doc = new DOMParser().parseFromString("<table><tbody>" + html + "</tbody></table>", "text/html");
            var fresh = doc.querySelector("tbody");
            if (fresh) { rows.replaceChildren.apply(rows, Array.prototype.slice.call(fresh.childNodes)); }
          }
        })
        .catch(function () { /* the next tick tries again */ })
        .then(function () { busy = false; });
    }, 5000);
  }
})();
