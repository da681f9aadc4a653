// The analyst app: who is signed in, then the Ask view (a conversation) or the Review view.
import { api, ApiError, plainOutcome, session } from "./api.js";
import { labelBox, message, resultView, sqlBlock } from "./answer.js";
import { announce, h, showAlert } from "./dom.js";
import { startReview } from "./review.js";

const $ = (id) => document.getElementById(id);
const conversation = { id: null, database: null, turns: 0 };

function show(viewId) {
  for (const id of ["signed-out", "ask-view", "review-view"]) $(id).hidden = id !== viewId;
}

async function boot() {
  let me;
  try {
    me = await api("GET", "/app/api/me");
  } catch (err) {
    showAlert(err.message);
    return;
  }
  if (!me.signed_in) {
    show("signed-out");
    if (me.message) $("signed-out-message").textContent = me.message;
    $("sign-in").hidden = !me.sign_in_url;
    if (me.sign_in_url) $("sign-in").href = `${me.sign_in_url}?next=${encodeURIComponent(location.pathname)}`;
    return;
  }
  session.csrf = me.csrf_token;
  $("who").textContent = me.auth === "none" ? "Development mode (no sign-in)" : `Signed in as ${me.principal}`;
  $("sign-out").hidden = me.auth !== "oauth";
  const reviewer = me.role === "reviewer" || me.role === "admin";
  $("nav-review").hidden = !reviewer;
  if (me.role === "admin") {
    $("nav-report").hidden = false;
    $("nav-report").href = `/experiments/${encodeURIComponent(me.experiment)}`;
  }
  const reviewing = location.pathname.replace(/\/$/, "") === "/app/review";
  (reviewing ? $("nav-review") : $("nav-ask")).setAttribute("aria-current", "page");
  if (reviewing && reviewer) {
    show("review-view");
    startReview(me);
    return;
  }
  if (reviewing) showAlert("Reviewing needs the reviewer role; you can ask questions here.");
  show("ask-view");
  const select = $("database");
  select.replaceChildren(...me.databases.map((d) => h("option", { value: d }, d)));
  select.addEventListener("change", newConversation);
  $("new-conversation").addEventListener("click", () => { newConversation(); $("question").focus(); });
  $("ask-form").addEventListener("submit", (e) => { e.preventDefault(); ask(); });
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); ask(); }
  });
  $("question").focus();
}

function newConversation() {
  conversation.id = null;
  conversation.turns = 0;
  $("thread").replaceChildren();
  showAlert("");
  announce("New conversation: the next question starts fresh.");
}

async function ask() {
  const input = $("question");
  const question = input.value.trim();
  if (!question) { announce("Type a question first."); input.focus(); return; }
  const button = $("ask");
  button.disabled = true;
  $("ask-form").setAttribute("aria-busy", "true");
  showAlert("");
  announce("Writing SQL and running it…");
  const pending = h("li", { class: "turn", "aria-busy": "true" }, h("h2", {}, question), message("note", "Writing SQL and running it…"));
  $("thread").append(pending);
  try {
    const database = $("database").value;
    if (!conversation.id || conversation.database !== database) {
      conversation.id = (await api("POST", "/v1/sessions", { database })).session_id;
      conversation.database = database;
    }
    let answer;
    try {
      answer = await api("POST", `/v1/sessions/${encodeURIComponent(conversation.id)}/questions`, { question });
    } catch (err) {
      if (!(err instanceof ApiError) || err.type !== "unknown_session") throw err;
      // the conversation expired: the question starts a new one, and the page says so (no earlier turns now)
      conversation.id = (await api("POST", "/v1/sessions", { database })).session_id;
      $("thread").replaceChildren(pending);
      answer = await api("POST", `/v1/sessions/${encodeURIComponent(conversation.id)}/questions`, { question });
      showAlert("The earlier conversation had expired, so this question started a new one without it.");
    }
    pending.replaceWith(turnView(question, answer, database));
    input.value = "";
    announce(answer.outcome === "ok" ? `Answered: ${answer.rows ? answer.rows.length : 0} rows.` : plainOutcome(answer.outcome, answer.detail));
  } catch (err) {
    pending.remove();
    showAlert(err instanceof ApiError ? err.message : `Something went wrong: ${err.message}`);
    announce("");
  } finally {
    button.disabled = false;
    $("ask-form").removeAttribute("aria-busy");
  }
}

function turnView(question, a, database) {
  const follow = a.context_turns ? ` · follow-up (${a.context_turns} earlier question${a.context_turns === 1 ? "" : "s"} given)` : "";
  const card = h("li", { class: "turn", "data-query-id": a.query_id, "data-outcome": a.outcome },
    h("h2", {}, `${a.turn}. ${question}`),
    h("p", { class: "meta" }, `${a.variant} · ${a.prompt_version} · ${Math.round(a.latency_ms)} ms${follow}${a.cached ? " · cached answer" : ""}`));
  const words = plainOutcome(a.outcome, a.detail);
  if (words) card.append(message(a.outcome === "empty" ? "note" : "bad", words));
  if (a.sql) card.append(sqlBlock(a.sql));
  if (a.outcome === "ok" && a.columns) card.append(resultView(a.columns, a.rows, { truncated: a.truncated, name: `answer-${a.turn}` }));
  card.append(labelBox(a.query_id, { database, sql: a.sql }));
  return card;
}

$("sign-out").addEventListener("click", async () => {
  try {
    const r = await api("POST", "/app/logout");
    location.assign(r.redirect);
  } catch (err) {
    showAlert(err.message);
  }
});

boot();
