// The result table: paginated, sortable by any column (header buttons, aria-sort), copy as
// tab-separated text, download as CSV.
import { announce, copyText, h, uid } from "./dom.js";

const PAGE_SIZES = [10, 25, 50, 100];

function compare(a, b) {
  if (a === null || a === undefined) return b === null || b === undefined ? 0 : 1;
  if (b === null || b === undefined) return -1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

function show(value) {
  return value === null || value === undefined ? "NULL" : String(value);
}

// A spreadsheet would run a text cell starting with = + - @ as a formula: such cells get a leading quote.
function csvCell(value) {
  if (value === null || value === undefined) return "";
  let text = String(value);
  if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = "'" + text;
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function toCsv(columns, rows) {
  return [columns, ...rows].map((r) => r.map(csvCell).join(",")).join("\r\n") + "\r\n";
}

export function resultTable(columns, rows, { caption = "Result", truncated = false, filename = "result.csv" } = {}) {
  const state = { sortBy: null, dir: 1, page: 0, size: PAGE_SIZES[0] };
  const numeric = columns.map((_, i) => rows.some((r) => typeof r[i] === "number"));
  const wrap = h("div", { class: "table-wrap" });
  const table = h("table", { class: "data" });
  const cap = h("caption");
  const head = h("tr");
  const body = h("tbody");
  const headers = columns.map((name, i) => {
    const button = h("button", { type: "button", onclick: () => sortBy(i) }, name, h("span", { class: "arrow", "aria-hidden": "true" }, " ↕"));
    const th = h("th", { scope: "col", "aria-sort": "none" }, button);
    head.append(th);
    return th;
  });
  table.append(cap, h("thead", {}, head), body);

  const sizeId = uid("page-size");
  const prev = h("button", { type: "button", class: "quiet", onclick: () => go(state.page - 1) }, "Previous page");
  const next = h("button", { type: "button", class: "quiet", onclick: () => go(state.page + 1) }, "Next page");
  const size = h("select", { id: sizeId, onchange: (e) => { state.size = Number(e.target.value); go(0); } },
    PAGE_SIZES.map((n) => h("option", { value: n }, `${n} rows`)));
  const pager = h("div", { class: "pager" }, prev, next, h("label", { for: sizeId }, "Rows per page"), size);
  const tools = h("div", { class: "toolbar" },
    h("button", { type: "button", class: "quiet", onclick: () => copyText(toTsv()) }, "Copy table"),
    h("button", { type: "button", class: "quiet", onclick: download }, "Download CSV"));

  function ordered() {
    if (state.sortBy === null) return rows;
    const i = state.sortBy;
    return [...rows].sort((a, b) => state.dir * compare(a[i], b[i]));
  }

  function toTsv() {
    return [columns, ...ordered()].map((r) => r.map(show).join("\t")).join("\n");
  }

  function download() {
    const url = URL.createObjectURL(new Blob([toCsv(columns, ordered())], { type: "text/csv;charset=utf-8" }));
    const link = h("a", { href: url, download: filename });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    announce(`Downloading ${filename}.`);
  }

  function sortBy(i) {
    state.dir = state.sortBy === i ? -state.dir : 1;
    state.sortBy = i;
    headers.forEach((th, j) => {
      const sort = j === i ? (state.dir > 0 ? "ascending" : "descending") : "none";
      th.setAttribute("aria-sort", sort);
      th.querySelector(".arrow").textContent = { ascending: " ↑", descending: " ↓", none: " ↕" }[sort];
    });
    go(0);
    announce(`Sorted by ${columns[i]}, ${state.dir > 0 ? "ascending" : "descending"}.`);
  }

  function go(page) {
    const pages = Math.max(1, Math.ceil(rows.length / state.size));
    state.page = Math.min(Math.max(0, page), pages - 1);
    const start = state.page * state.size;
    const shown = ordered().slice(start, start + state.size);
    body.replaceChildren(...shown.map((r) => h("tr", {}, r.map((v, i) => h("td", { class: numeric[i] ? "num" : null }, show(v))))));
    const more = truncated ? " (cut at the row limit)" : "";
    cap.textContent = rows.length
      ? `${caption}: ${rows.length} row${rows.length === 1 ? "" : "s"}${more}, showing ${start + 1}–${start + shown.length}`
      : `${caption}: no rows`;
    prev.disabled = state.page === 0;
    next.disabled = state.page >= pages - 1;
    pager.hidden = rows.length <= PAGE_SIZES[0];
  }

  go(0);
  wrap.append(tools, table, pager);
  return wrap;
}
