// Calls to the platform's JSON API, and what its errors mean in plain words.
// With web sign-in the session cookie travels by itself (HttpOnly: this code never sees it); every
// state-changing call carries the session's CSRF token. No token is ever stored in the browser.

export const session = { csrf: null };

export class ApiError extends Error {
  constructor(status, type, message, retryAfter) {
    super(message);
    this.status = status;
    this.type = type;
    this.retryAfter = retryAfter;
  }
}

function seconds(n) {
  return n === 1 ? "1 second" : `${n} seconds`;
}

// The sentence a person reads for an API error (status, error.type, the server's message, Retry-After).
export function plainError(status, type, message, retryAfter) {
  const wait = retryAfter ? ` Try again in ${seconds(retryAfter)}.` : " Try again in a moment.";
  if (status === 0) return "The server cannot be reached. Check your connection, then try again.";
  if (status === 401) return "Your session has ended. Sign in again to continue.";
  if (status === 403 && type === "csrf_failed") return "This page is out of date. Reload it, then try again.";
  if (status === 403) return "Your account is not allowed to do this.";
  if (status === 429) return "You are asking faster than the service allows." + wait;
  if (type === "unknown_session") return "This conversation has expired. Your next question starts a new one.";
  if (type === "session_full") return "This conversation is full. Start a new conversation to go on.";
  if (type === "label_exists") return "You already labelled this answer.";
  if (type === "unknown_query") return "This answer can no longer be labelled.";
  if (status === 503 && (type === "http_503" || type === "unavailable" || type === "variant_unavailable"))
    return "The language model is not responding right now." + wait;
  if (status === 503) return "The service is temporarily unavailable." + wait;
  if (status === 413) return "That is too long to send.";
  if (status === 422) return `The request was not accepted: ${message}`;
  if (status >= 500) return "Something went wrong on the server. It has been logged; try again.";
  return message || `The request failed (HTTP ${status}).`;
}

// The sentence for an answer's outcome that is not a plain success.
export function plainOutcome(outcome, detail, timeoutHint) {
  switch (outcome) {
    case "guard_refused":
      return "The generated SQL was refused because it is not a single read-only query, so nothing was run. " +
        (detail ? `Reason: ${detail}` : "");
    case "timeout":
      return "The query took too long and was stopped. Try narrowing the question, for example to a period or fewer groups." +
        (timeoutHint ? ` (${timeoutHint})` : "");
    case "sql_error":
      return "The database could not run the generated SQL. " + (detail ? `It said: ${detail}` : "");
    case "llm_error":
      return "The language model did not produce an answer. Try again in a moment.";
    case "empty":
      return "The query ran and returned no rows.";
    default:
      return "";
  }
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  let response;
  try {
    response = await fetch(path, {
      method, headers, credentials: "same-origin", cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network", plainError(0));
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const err = (data && data.error) || {};
    const retry = parseInt(response.headers.get("Retry-After") || "", 10) || null;
    throw new ApiError(response.status, err.type || "", plainError(response.status, err.type, err.message, retry), retry);
  }
  return data;
}
