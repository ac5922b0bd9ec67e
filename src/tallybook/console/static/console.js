// tallybook console: a few conveniences; every page works without this file.
(function () {
  "use strict";
  // A submitted form's buttons go quiet, so a double click sends one request. (The server
  // would do the action once anyway: every action form carries a one-time token.)
  document.addEventListener("submit", function (event) {
    var form = event.target;
    setTimeout(function () {
      form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
    }, 0);
  });
  // "/" focuses the customer search, as in many consoles.
  document.addEventListener("keydown", function (event) {
    var tag = (event.target.tagName || "").toLowerCase();
    if (event.key === "/" && tag !== "input" && tag !== "textarea" && tag !== "select") {
      var box = document.querySelector(".topbar .search input");
      if (box) { event.preventDefault(); box.focus(); box.select(); }
    }
  });
  // Copy buttons next to ids.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button || !navigator.clipboard) { return; }
    navigator.clipboard.writeText(button.getAttribute("data-copy")).then(function () {
      button.textContent = "copied";
      setTimeout(function () { button.textContent = "copy"; }, 1200);
    });
  });
})();
