// "5 minutes ago" beside a time is written by the server when it renders the page; this keeps
// it true while the page stays open. The server's style is kept: one unit in lists, two on
// pages (in parentheses), as Django's timesince words it.
(function () {
  "use strict";
  var UNITS = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400],
    ["hour", 3600], ["minute", 60]];

  function part(count, unit) {
    return count + "\u00a0" + unit + (count === 1 ? "" : "s");
  }

  // The largest unit, then the next one when it is not zero ("1 hour, 3 minutes").
  function since(seconds, depth) {
    for (var i = 0; i < UNITS.length; i++) {
      var count = Math.floor(seconds / UNITS[i][1]);
      if (count === 0) continue;
      var text = part(count, UNITS[i][0]);
      var next = UNITS[i + 1];
      var rest = next ? Math.floor((seconds - count * UNITS[i][1]) / next[1]) : 0;
      return depth > 1 && rest > 0 ? text + ", " + part(rest, next[0]) : text;
    }
    return part(0, "minute");
  }

  function refresh() {
    var now = Date.now();
    document.querySelectorAll("small.age").forEach(function (age) {
      var time = age.previousElementSibling;
      if (time && time.tagName === "BR") time = time.previousElementSibling;
      var then = time && time.tagName === "TIME" ? Date.parse(time.getAttribute("datetime")) : NaN;
      if (isNaN(then)) return;
      var framed = age.textContent.charAt(0) === "(";
      var text = since(Math.max(0, (now - then) / 1000), framed ? 2 : 1) + " ago";
      age.textContent = framed ? "(" + text + ")" : text;
    });
  }

  setInterval(refresh, 30000);
})();
