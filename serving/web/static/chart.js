// Which chart fits a result, and drawing it with plotly.js (served by the app from the `plotly` Python
// package, loaded on first use). The rules, by the result's shape:
//   one row, one number                    -> a KPI (the number, large)
//   one time column + numbers              -> a line per number, over time
//   one category column + numbers          -> bars per number (at most 60 categories)
//   time + category + one number           -> a line per category
//   two categories + one number            -> grouped bars
//   anything else                          -> the table alone
// A time column holds ISO dates or months ("2024-03-01", "2024-03", "2024") or is an integer column
// named like a year. An integer column named id or *_id is a category, not a measure.
import { h } from "./dom.js";

const TIME = /^\d{4}(-\d{2}(-\d{2})?)?([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?Z?$/;
const MAX_BARS = 60;
const MAX_POINTS = 2000;
// Dark enough for 3:1 against white (WCAG 1.4.11, non-text contrast).
const COLORWAY = ["#1d4f91", "#b3471d", "#1d6b33", "#6b2f8f", "#8a6100", "#0f6e6e", "#a1261b", "#3b414b"];

export const KINDS = { table: "Table only", bar: "Bar chart", line: "Line chart", kpi: "Single number (KPI)" };

function kindOf(name, values) {
  const present = values.filter((v) => v !== null && v !== undefined);
  if (!present.length) return "category";
  if (present.every((v) => typeof v === "number")) {
    if (/(^|_)id$/i.test(name)) return "category";
    if (/year/i.test(name) && present.every((v) => Number.isInteger(v) && v > 1800 && v < 2200)) return "time";
    return "measure";
  }
  if (present.every((v) => typeof v === "string" && TIME.test(v))) return "time";
  return "category";
}

// The chart for a result: {kind, x, series, y} with column indexes, or {kind: "table"} / {kind: "kpi"}.
export function chooseChart(columns, rows) {
  if (!rows.length) return { kind: "table", reason: "no rows" };
  const kinds = columns.map((name, i) => kindOf(name, rows.map((r) => r[i])));
  const measures = kinds.flatMap((k, i) => (k === "measure" ? [i] : []));
  const dims = kinds.flatMap((k, i) => (k === "measure" ? [] : [i]));
  if (rows.length === 1 && columns.length === 1 && measures.length === 1) return { kind: "kpi", y: [0] };
  if (dims.length === 1 && measures.length >= 1) {
    if (kinds[dims[0]] === "time" && rows.length <= MAX_POINTS) return { kind: "line", x: dims[0], y: measures };
    if (rows.length <= MAX_BARS) return { kind: "bar", x: dims[0], y: measures };
  }
  if (dims.length === 2 && measures.length === 1) {
    const time = dims.find((i) => kinds[i] === "time");
    if (time !== undefined && rows.length <= MAX_POINTS)
      return { kind: "line", x: time, series: dims.find((i) => i !== time), y: measures };
    if (rows.length <= MAX_BARS * 4) return { kind: "bar", x: dims[0], series: dims[1], y: measures };
  }
  return { kind: "table", reason: "no chart fits this shape" };
}

// Which kinds the user may switch to: the table always; a chart when the shape allows one.
export function possibleKinds(columns, rows) {
  const auto = chooseChart(columns, rows);
  const kinds = ["table"];
  if (auto.kind === "kpi") kinds.push("kpi");
  if (auto.kind === "bar" || auto.kind === "line") kinds.push("bar", "line");
  return { auto, kinds };
}

let loading = null;
function plotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const script = h("script", { src: "/app/static/vendor/plotly.min.js" });
      script.addEventListener("load", () => resolve(window.Plotly));
      script.addEventListener("error", () => { loading = null; reject(new Error("the chart library did not load")); });
      document.head.append(script);
    });
  }
  return loading;
}

function traces(plan, kind, columns, rows) {
  const order = kind === "line" ? [...rows].sort((a, b) => String(a[plan.x]).localeCompare(String(b[plan.x]))) : rows;
  const type = kind === "line" ? "scatter" : "bar";
  const mode = kind === "line" ? "lines+markers" : undefined;
  if (plan.series !== undefined) {
    const groups = new Map();
    for (const r of order) {
      const key = String(r[plan.series]);
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(r);
    }
    return [...groups].map(([name, rs]) => ({ type, mode, name, x: rs.map((r) => r[plan.x]), y: rs.map((r) => r[plan.y[0]]) }));
  }
  return plan.y.map((i) => ({ type, mode, name: columns[i], x: order.map((r) => r[plan.x]), y: order.map((r) => r[i]) }));
}

export function describe(plan, kind, columns) {
  const y = plan.y.map((i) => columns[i]).join(" and ");
  const by = plan.series !== undefined ? ` for each ${columns[plan.series]}` : "";
  return `${kind === "line" ? "Line" : "Bar"} chart of ${y} by ${columns[plan.x]}${by}. The same data is in the table below.`;
}

export async function drawChart(container, plan, kind, columns, rows) {
  const Plotly = await plotly();
  const layout = {
    margin: { t: 20, r: 20, b: 60, l: 70 }, colorway: COLORWAY, barmode: "group", showlegend: true,
    legend: { orientation: "h", y: -0.25 }, xaxis: { title: { text: columns[plan.x] }, automargin: true },
    yaxis: { title: { text: plan.y.length === 1 ? columns[plan.y[0]] : "" }, automargin: true },
    font: { family: "system-ui, DejaVu Sans, sans-serif", color: "#1b1f24" }, paper_bgcolor: "#ffffff",
    plot_bgcolor: "#ffffff",
  };
  await Plotly.newPlot(container, traces(plan, kind, columns, rows), layout,
    // no mode bar: it styles its hover state with a <style> element per chart, which the CSP forbids
    { displaylogo: false, responsive: true, displayModeBar: false });
}
