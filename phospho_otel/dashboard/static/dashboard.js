// phospho-otel dashboard: draws the charts whose Chart.js configurations the server put
// in the page, makes table rows clickable, then marks the page ready
// (document.body.dataset.ready = "1", which the browser tests and benchmark wait for).
"use strict";
(function () {
  function drawCharts() {
    if (typeof window.Chart === "undefined") { return; }
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var name = canvas.getAttribute("data-chart");
      var source = document.querySelector('script[data-chart-config="' + name + '"]');
      if (!source) { return; }
      new window.Chart(canvas, JSON.parse(source.textContent));
    });
  }

  function clickableRows() {
    document.querySelectorAll("tr[data-href]").forEach(function (row) {
      row.addEventListener("click", function (event) {
        if (event.target.closest("a, button, input, select, textarea")) { return; }
        if (window.getSelection && String(window.getSelection())) { return; }
        window.location.assign(row.getAttribute("data-href"));
      });
    });
  }

  function start() {
    drawCharts();
    clickableRows();
    document.body.dataset.ready = "1";
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
