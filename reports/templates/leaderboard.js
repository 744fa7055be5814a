// Sortable tables: click a header to sort by it (numbers descending first); cells without a value go last.
(function () {
  "use strict";
  function sortTable(table, th) {
    var headers = Array.prototype.slice.call(th.parentNode.children);
    var col = headers.indexOf(th);
    var numeric = th.getAttribute("data-sort") === "num";
    var current = th.getAttribute("aria-sort");
    var dir = current === "descending" ? "ascending" : current === "ascending" ? "descending"
      : (numeric ? "descending" : "ascending");
    headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var ka = a.cells[col].getAttribute("data-value") || "";
      var kb = b.cells[col].getAttribute("data-value") || "";
      if (ka === "" || kb === "") { return (ka === "") - (kb === ""); }
      var c = numeric ? parseFloat(ka) - parseFloat(kb) : ka.localeCompare(kb);
      return dir === "ascending" ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th[data-sort]").forEach(function (th) {
      var button = th.querySelector("button");
      if (button) { button.addEventListener("click", function () { sortTable(table, th); }); }
    });
  });
})();
