// One answer on the page: its SQL, its rows as a chart the user can switch and a table, and the label
// (right / wrong / a suggested correction with a dry run). Used by the Ask and the Review views.
import { api, ApiError, plainOutcome } from "./api.js";
import { KINDS, describe, drawChart, possibleKinds } from "./chart.js";
import { announce, copyText, h, uid } from "./dom.js";
import { highlight } from "./sql.js";
import { resultTable } from "./table.js";

export function message(kind, text) {
  return h("p", { class: `message ${kind}` }, text);
}

export function sqlBlock(sql) {
  return h("div", {},
    highlight(sql),
    h("div", { class: "toolbar" }, h("button", { type: "button", class: "quiet", onclick: () => copyText(sql) }, "Copy SQL")));
}

// The rows: a "Show as" choice (the automatic one first), the chart or KPI, and the table.
export function resultView(columns, rows, { truncated = false, name = "result" } = {}) {
  const { auto, kinds } = possibleKinds(columns, rows);
  const wrap = h("div", { class: "result" });
  const picker = uid("show-as");
  const select = h("select", { id: picker, class: "show-as" },
    kinds.map((k) => h("option", { value: k, selected: k === auto.kind }, k === auto.kind ? `${KINDS[k]} (automatic)` : KINDS[k])));
  const view = h("div", { class: "view" });
  const table = resultTable(columns, rows, { caption: "Result", truncated, filename: `${name}.csv` });

  async function render(kind) {
    view.replaceChildren();
    view.dataset.kind = kind;
    if (kind === "kpi") {
      const value = rows[0][0];
      view.append(h("p", { class: "kpi", "aria-describedby": `${picker}-kpi` }, typeof value === "number" ? value.toLocaleString() : String(value)),
        h("p", { class: "kpi-label", id: `${picker}-kpi` }, columns[0]));
    } else if (kind === "bar" || kind === "line") {
      const plan = auto.kind === "bar" || auto.kind === "line" ? auto : null;
      const chart = h("div", { class: "chart", role: "img", "aria-label": describe(plan, kind, columns) });
      view.append(chart);
      try {
        await drawChart(chart, plan, kind, columns, rows);
      } catch (err) {
        view.replaceChildren(message("bad", `The chart could not be drawn (${err.message}); the table below has the data.`));
      }
    }
  }

  select.addEventListener("change", () => { render(select.value); announce(`Showing the result as: ${KINDS[select.value]}.`); });
  if (kinds.length > 1) wrap.append(h("div", { class: "row" }, h("label", { for: picker }, "Show as"), select));
  wrap.append(view, table);
  render(auto.kind);
  return wrap;
}

// The labelling controls for a served answer (query_id), posted to /v1/feedback as the signed-in person.
export function labelBox(queryId, { database, sql, after = null, reviewer = false } = {}) {
  const box = h("div", { class: "label-box" });
  const note = h("div", { "aria-live": "polite" });
  const yes = h("button", { type: "button", "aria-label": "Right: this answer is correct", "aria-keyshortcuts": reviewer ? "y" : null }, "✓ Right");
  const no = h("button", { type: "button", "aria-label": "Wrong: this answer is incorrect", "aria-keyshortcuts": reviewer ? "n" : null }, "✗ Wrong");
  const suggest = h("button", { type: "button", class: "quiet", "aria-expanded": "false" }, "Suggest a correction");
  const editorId = uid("correction");
  const editor = h("textarea", { id: editorId, rows: 4, spellcheck: "false" });
  editor.value = sql || "";
  const commentId = uid("comment");
  const comment = h("input", { type: "text", id: commentId, maxlength: 4000 });
  const preview = h("div", { "aria-live": "polite" });
  const dry = h("button", { type: "button", class: "quiet" }, "Dry run");
  const send = h("button", { type: "button" }, "Submit correction");
  const correction = h("div", { class: "correction", hidden: true },
    h("label", { for: editorId }, "Corrected SQL"), editor,
    h("label", { for: commentId }, "Comment (optional)"), comment,
    h("div", { class: "toolbar" }, dry, send), preview);

  let sent = false;
  async function label(correct, correctedSql) {
    if (sent) return;  // one label per answer from this page (a key held down, a double click)
    sent = true;
    for (const b of [yes, no, send]) b.disabled = true;
    try {
      const body = { query_id: queryId, correct };
      if (correctedSql) body.corrected_sql = correctedSql;
      if (comment.value.trim()) body.comment = comment.value.trim();
      const r = await api("POST", "/v1/feedback", body);
      const words = correct ? "right" : correctedSql ? "wrong, with your correction" : "wrong";
      note.replaceChildren(message("good", `Thank you: recorded as ${words}${r.source === "reviewer" ? " (review)" : ""}.`));
      yes.setAttribute("aria-pressed", String(correct));
      no.setAttribute("aria-pressed", String(!correct));
      correction.hidden = true;
      suggest.disabled = true;
      if (after) after(correct);
    } catch (err) {
      note.replaceChildren(message("bad", err instanceof ApiError ? err.message : String(err)));
      sent = err instanceof ApiError && err.type === "label_exists";
      for (const b of [yes, no, send]) b.disabled = sent;
    }
  }

  yes.addEventListener("click", () => label(true));
  no.addEventListener("click", () => label(false));
  suggest.addEventListener("click", () => {
    correction.hidden = !correction.hidden;
    suggest.setAttribute("aria-expanded", String(!correction.hidden));
    if (!correction.hidden) editor.focus();
  });
  dry.addEventListener("click", async () => {
    dry.disabled = true;
    preview.replaceChildren(message("note", "Running the SQL…"));
    try {
      preview.replaceChildren(...(await dryRunView(database, editor.value)));
    } catch (err) {
      preview.replaceChildren(message("bad", err.message));
    } finally {
      dry.disabled = false;
    }
  });
  send.addEventListener("click", () => {
    if (!editor.value.trim()) { preview.replaceChildren(message("bad", "Write the corrected SQL first.")); return; }
    label(false, editor.value.trim());
  });
  box.append(h("div", { class: "toolbar" }, h("span", { class: "question" }, "Is this answer right?"), yes, no, suggest), correction, note);
  box.label = label;
  return box;
}

// Run caller SQL through the guard and the sandbox (a few rows): what to show for it.
export async function dryRunView(database, sql) {
  const r = await api("POST", "/v1/sql/dry-run", { database, sql });
  if (r.outcome === "ok") {
    return [message("good", `It runs: ${r.rows.length}${r.truncated ? "+" : ""} row${r.rows.length === 1 ? "" : "s"} (first rows shown).`),
      resultTable(r.columns, r.rows, { caption: "Dry run", truncated: r.truncated, filename: "dry-run.csv" })];
  }
  return [message(r.outcome === "empty" ? "note" : "bad", plainOutcome(r.outcome, r.detail))];
}
