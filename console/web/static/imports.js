// Progress of a bulk import (passes or cards), pushed by the server as Server-Sent Events.
// The page renders the state it had when loaded; this only keeps it moving.
(function () {
  "use strict";
  var box = document.getElementById("import-job");
  if (!box || !window.EventSource) { return; }
  var bar = document.getElementById("import-progress");
  var status = document.getElementById("import-status");
  var table = document.querySelector("#import-problem-table tbody");

  function text(id, value) {
    var el = document.getElementById(id);
    if (el) { el.textContent = String(value); }
  }

  function show(state) {
    bar.max = Math.max(1, state.total);
    bar.value = state.done;
    text("import-done", state.done);
    text("import-total", state.total);
    text("import-count", state.imported);
    text("import-problems", state.problem_count);
    table.textContent = "";
    state.problems.forEach(function (p) {
      var tr = document.createElement("tr");
      [p.line, p.column, p.reason, p.detail].forEach(function (v) {
        var td = document.createElement("td");
        td.textContent = String(v);  // never innerHTML: row text comes from the uploaded file
        tr.appendChild(td);
      });
      table.appendChild(tr);
    });
  }

  var source = new EventSource(box.getAttribute("data-events"));
  source.addEventListener("progress", function (e) { show(JSON.parse(e.data)); });
  source.addEventListener("done", function (e) {
    var state = JSON.parse(e.data);
    show(state);
    source.close();
    status.className = state.error ? "error" : "notice";
    status.textContent = state.error
      ? box.getAttribute("data-failed-text") + " " + state.error
      : box.getAttribute("data-done-text");
    box.setAttribute("data-finished", "1");
  });
})();
