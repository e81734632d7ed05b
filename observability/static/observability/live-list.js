// A list that refreshes itself while anything it shows is pending or running: fetch the same
// URL (same filters, search and page), swap the rows that changed, keep the rows the operator
// has selected or is typing into. The page says whether it is live (#live-list data-live).
(function () {
  "use strict";
  var marker = document.getElementById("live-list");
  if (!marker || marker.dataset.live !== "1") return;
  var table = marker.dataset.table;
  var delay = 2000;

  function rowKey(row) {
    var box = row.querySelector("input.action-select");
    if (box) return "pk:" + box.value;
    if (row.id) return "id:" + row.id;
    var link = row.querySelector("a[href]");
    return link ? "href:" + link.getAttribute("href") : null;
  }

  function busy(row) {
    var focused = document.activeElement;
    if (focused && focused !== document.body && row.contains(focused) &&
        !focused.classList.contains("action-select")) return true;
    return Array.prototype.some.call(row.querySelectorAll("input[type=text], textarea"),
      function (field) { return field.value !== field.defaultValue; });
  }

  function mergeRows(body, freshBody) {
    var current = {};
    Array.prototype.forEach.call(body.rows, function (row) {
      var key = rowKey(row);
      if (key) current[key] = row;
    });
    var rows = Array.prototype.map.call(freshBody.rows, function (fresh) {
      var key = rowKey(fresh);
      var old = key && current[key];
      if (old) delete current[key];
      if (old && busy(old)) return old;
      var row = document.importNode(fresh, true);
      var box = old && old.querySelector("input.action-select");
      var freshBox = row.querySelector("input.action-select");
      if (box && freshBox) {
        // The same checkbox element: it stays checked, and admin's actions still count it.
        freshBox.replaceWith(box);
        row.classList.toggle("selected", box.checked);
      }
      return row;
    });
    Object.keys(current).forEach(function (key) {
      var box = current[key].querySelector("input.action-select");
      if (box && box.checked) {
        box.checked = false;
        box.dispatchEvent(new Event("change", { bubbles: true }));
      }
    });
    while (body.firstChild) body.removeChild(body.firstChild);
    rows.forEach(function (row) { body.appendChild(row); });
  }

  function swap(selector, fresh) {
    var old = document.querySelector(selector);
    var replacement = fresh.querySelector(selector);
    if (old && replacement) old.replaceWith(document.importNode(replacement, true));
  }

  function apply(fresh) {
    var body = document.querySelector(table + " tbody");
    var freshBody = fresh.querySelector(table + " tbody");
    if (body && freshBody) {
      mergeRows(body, freshBody);
    } else if (body) {
      mergeRows(body, document.createElement("tbody"));
    } else if (freshBody) {
      // The list was empty and now has rows: show the results and let admin's actions count them.
      var results = fresh.querySelector(".results");
      var paginator = document.querySelector("#changelist-form .paginator, .paginator");
      if (results && paginator) {
        paginator.parentNode.insertBefore(document.importNode(results, true), paginator);
        if (window.Actions) window.Actions(document.querySelectorAll("tr input.action-select"));
      }
    }
    swap(".paginator", fresh);
    var live = fresh.getElementById("live-list");
    return live && live.dataset.live === "1";
  }

  function poll() {
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store",
                                  headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var still = apply(fresh);
        if (!still) {
          marker.textContent = "up to date: nothing shown is pending or running";
          marker.dataset.live = "0";
          marker.classList.remove("console-live");
          return;
        }
        marker.textContent = "updating live";
        delay = 2000;
        window.setTimeout(poll, delay);
      })
      .catch(function () {
        delay = Math.min(delay * 2, 30000);
        marker.textContent = "live updates paused, retrying";
        window.setTimeout(poll, delay);
      });
  }

  window.setTimeout(poll, delay);
})();
