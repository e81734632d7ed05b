// The run page and the checkpoints page: JSON values as collapsible, searchable trees, and
// the run-wide log's level filter and text search. Plain JavaScript, no libraries.
(function () {
  "use strict";

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function leaf(value) {
    var kind = value === null ? "null" : typeof value;
    return el("span", "jt-value jt-" + kind, kind === "string" ? JSON.stringify(value) : String(value));
  }

  function branch(key, value, depth) {
    var item = el("li");
    if (value === null || typeof value !== "object") {
      if (key !== null) item.appendChild(el("span", "jt-key", key + ": "));
      item.appendChild(leaf(value));
      return item;
    }
    var keys = Object.keys(value);
    var details = el("details");
    details.open = depth < 1;
    var summary = el("summary");
    if (key !== null) summary.appendChild(el("span", "jt-key", key + ": "));
    summary.appendChild(el("span", "jt-count", Array.isArray(value)
      ? "[" + keys.length + " item" + (keys.length === 1 ? "" : "s") + "]"
      : "{" + keys.length + " key" + (keys.length === 1 ? "" : "s") + "}"));
    details.appendChild(summary);
    var list = el("ul");
    keys.forEach(function (k) { list.appendChild(branch(k, value[k], depth + 1)); });
    details.appendChild(list);
    item.appendChild(details);
    return item;
  }

  function search(tree, query, counter) {
    var needle = query.trim().toLowerCase();
    var hits = 0;
    tree.querySelectorAll(".jt-hit").forEach(function (n) { n.classList.remove("jt-hit"); });
    if (needle) {
      tree.querySelectorAll(".jt-key, .jt-value").forEach(function (n) {
        if (n.textContent.toLowerCase().indexOf(needle) === -1) return;
        n.classList.add("jt-hit");
        hits += 1;
        for (var up = n.parentElement; up && up !== tree; up = up.parentElement) {
          if (up.tagName === "DETAILS") up.open = true;
        }
      });
    }
    counter.textContent = needle ? hits + " match" + (hits === 1 ? "" : "es") : "";
  }

  function draw(holder) {
    if (holder.dataset.drawn) return;
    var source = holder.querySelector("script[type='application/json'], pre.json-source");
    if (!source) return;
    var value;
    try { value = JSON.parse(source.textContent); } catch (e) { return; }
    holder.dataset.drawn = "1";
    var bar = el("div", "jt-bar");
    var input = el("input");
    input.type = "search";
    input.placeholder = "Search keys and values";
    input.setAttribute("aria-label", "Search this JSON");
    var counter = el("span", "jt-matches");
    counter.setAttribute("aria-live", "polite");
    var expand = el("button", "jt-expand", "Expand all");
    expand.type = "button";
    var collapse = el("button", "jt-collapse", "Collapse all");
    collapse.type = "button";
    bar.append(input, expand, collapse, counter);
    var tree = el("ul", "jt-tree");
    tree.appendChild(branch(null, value, 0));
    input.addEventListener("input", function () { search(tree, input.value, counter); });
    expand.addEventListener("click", function () {
      tree.querySelectorAll("details").forEach(function (d) { d.open = true; });
    });
    collapse.addEventListener("click", function () {
      tree.querySelectorAll("details").forEach(function (d, i) { d.open = i === 0; });
    });
    source.hidden = true;
    holder.append(bar, tree);
  }

  function init(root) {
    (root || document).querySelectorAll(".json-tree").forEach(draw);
  }

  function logFilter() {
    var table = document.getElementById("run-log");
    if (!table) return;
    var level = document.getElementById("log-level");
    var text = document.getElementById("log-search");
    var shown = document.getElementById("log-shown");
    var rows = table.tBodies[0].rows;
    function apply() {
      var min = Number(level.value);
      var needle = text.value.trim().toLowerCase();
      var count = 0;
      Array.prototype.forEach.call(rows, function (row) {
        var visible = Number(row.dataset.level) >= min &&
          (!needle || row.textContent.toLowerCase().indexOf(needle) !== -1);
        row.hidden = !visible;
        if (visible) count += 1;
      });
      shown.textContent = count + " of " + rows.length + " records";
    }
    level.addEventListener("change", apply);
    text.addEventListener("input", apply);
  }

  // A link to a stage (graph node, timeline bar, log line) opens its details.
  function openStage() {
    var match = /^#stage-(\d+)$/.exec(window.location.hash);
    var stage = match && document.getElementById("stage-" + match[1]);
    if (!stage) return;
    stage.querySelectorAll("details[data-key^='changes-'], details[data-key^='logs-']")
      .forEach(function (d) { d.open = true; });
  }

  window.ConsoleJsonTree = { init: init };
  function ready() { init(document); logFilter(); openStage(); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
  window.addEventListener("hashchange", openStage);
})();
