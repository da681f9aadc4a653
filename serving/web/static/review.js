// The Review view: answers of the running experiment, one at a time, labelled with the keyboard.
// "Random sample" asks the server for a uniform sample of the filter, so reviewers' labels estimate each
// variant's accuracy without the bias of the answers people chose to label themselves.
import { api, plainOutcome } from "./api.js";
import { dryRunView, labelBox, message, sqlBlock } from "./answer.js";
import { announce, h, showAlert } from "./dom.js";

const $ = (id) => document.getElementById(id);
const state = { items: [], at: 0, box: null, run: null, loads: 0 };

export function startReview(me) {
  const variants = $("review-variant");
  variants.append(...me.variants.map((v) => h("option", { value: v }, v)));
  $("review-form").addEventListener("submit", (e) => { e.preventDefault(); load(); });
  document.addEventListener("keydown", onKey);
  load();
}

async function load() {
  const params = new URLSearchParams({ sample: $("review-sample").value, limit: "20",
    unreviewed: String($("review-unreviewed").checked) });
  if ($("review-variant").value) params.set("variant", $("review-variant").value);
  $("review-load").disabled = true;
  announce("Loading answers…");
  try {
    const r = await api("GET", `/v1/review/queries?${params}`);
    state.items = r.items;
    state.at = 0;
    state.loads += 1;
    $("review-item").dataset.loads = String(state.loads);  // which load is shown (tests wait on it)
    announce(`${r.items.length} of ${r.matching} matching answers loaded.`);
    render();
  } catch (err) {
    showAlert(err.message);
  } finally {
    $("review-load").disabled = false;
  }
}

function render() {
  const host = $("review-item");
  const item = state.items[state.at];
  if (!item) {
    host.replaceChildren(message("note", state.items.length ? "All loaded answers are reviewed. Load more." : "No answers to review."));
    state.box = null;
    return;
  }
  const run = h("div", { "aria-live": "polite" });
  const card = h("article", { class: "review-card", "data-query-id": item.query_id, "aria-labelledby": "review-q" },
    h("p", { class: "meta" }, `${state.at + 1} of ${state.items.length} · ${item.variant} · ${item.prompt_version || "?"} · ${new Date(item.ts).toLocaleString()}`),
    item.context.length ? h("div", { class: "context" }, h("p", {}, "Earlier in the conversation:"),
      h("ol", {}, item.context.map((t) => h("li", {}, t.question)))) : null,
    h("h2", { id: "review-q" }, item.question));
  const words = plainOutcome(item.outcome, item.detail);
  if (words) card.append(message(item.outcome === "empty" ? "note" : "bad", words));
  if (item.sql) card.append(sqlBlock(item.sql));
  if (item.label) card.append(message("note", `Current label: ${item.label.correct ? "right" : "wrong"} (${item.label.source}).`));
  const runButton = h("button", { type: "button", class: "quiet", "aria-keyshortcuts": "r", onclick: () => runSql(item, run) }, "Run the SQL (r)");
  const nav = h("div", { class: "toolbar" },
    h("button", { type: "button", class: "quiet", "aria-keyshortcuts": "k", onclick: () => move(-1), disabled: state.at === 0 }, "Previous (k)"),
    h("button", { type: "button", class: "quiet", "aria-keyshortcuts": "j", onclick: () => move(1) }, "Next (j)"),
    item.sql ? runButton : null);
  state.box = labelBox(item.query_id, { database: item.database, sql: item.sql, reviewer: true,
    after: () => setTimeout(() => move(1), 400) });
  state.run = item.sql ? () => runSql(item, run) : null;
  card.append(nav, run, state.box);
  host.replaceChildren(card);
}

async function runSql(item, host) {
  host.replaceChildren(message("note", "Running the SQL…"));
  try {
    host.replaceChildren(...(await dryRunView(item.database, item.sql)));
  } catch (err) {
    host.replaceChildren(message("bad", err.message));
  }
}

function move(step) {
  state.at = Math.min(Math.max(0, state.at + step), state.items.length);
  render();
  $("review-item").focus?.();
}

function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const tag = (e.target && e.target.tagName) || "";
  if (["INPUT", "TEXTAREA", "SELECT"].includes(tag)) return;
  if (e.key === "j") move(1);
  else if (e.key === "k") move(-1);
  else if (e.key === "y" && state.box) state.box.label(true);
  else if (e.key === "n" && state.box) state.box.label(false);
  else if (e.key === "r" && state.run) state.run();
  else return;
  e.preventDefault();
}
