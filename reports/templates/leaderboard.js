// Sortable tables: click a header to sort by it (numbers descending first); footnoted values after the comparable
// ones, cells without a value last.
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
    // Groups stay apart in either direction: comparable values, then footnoted ones (another protocol, not
    // ranked), then empty cells.
    function group(cell) {
      if ((cell.getAttribute("data-value") || "") === "") { return 2; }
      return parseInt(cell.getAttribute("data-group") || "0", 10);
    }
    rows.sort(function (a, b) {
      var ka = a.cells[col].getAttribute("data-value") || "";
      var kb = b.cells[col].getAttribute("data-value") || "";
      var ga = group(a.cells[col]), gb = group(b.cells[col]);
      if (ga !== gb) { return ga - gb; }
      if (ka === "" || kb === "") { return 0; }
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
