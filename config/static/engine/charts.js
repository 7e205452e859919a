// Draws every chart on the page: an element with data-chart="<id>" and its figure in the JSON script
// <script type="application/json" id="<id>"> (Django's json_script). No inline script: the CSP allows
// scripts from this origin only, and plotly.js is served from the plotly package (vendor/plotly.min.js).
(function () {
  "use strict";
  function draw() {
    document.querySelectorAll("[data-chart]").forEach(function (element) {
      var source = document.getElementById(element.dataset.chart);
      if (!source || typeof Plotly === "undefined") {
        return;
      }
      var figure = JSON.parse(source.textContent);
      Plotly.newPlot(element, figure.data, figure.layout, {
        displaylogo: false,
        responsive: true,
        modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"],
      });
      element.classList.add("chart-drawn");
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
