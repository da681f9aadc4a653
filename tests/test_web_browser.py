"""The analyst app in a real browser: Playwright driving Debian's Chromium against a real ``t2s serve``
whose model is the scripted analyst (:mod:`tests.web_support`).

Ask → SQL, table and the automatic chart → a follow-up answered with its conversation → switch the chart
→ errors in plain words → label (right, and a corrected SQL after a dry run) → the labels counted in the
experiment report; the reviewer's keyboard flow; sign-in through a stand-in for Cognito's hosted UI with
the session in an HttpOnly cookie only. Every page state is checked with axe-core (WCAG 2.1 A/AA) and no
Content-Security-Policy violation may occur. Screenshots go to ``reports/test-artifacts/``; with
``T2S_UPDATE_DOCS=1`` also to ``docs/`` (the README shows them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import FLAGS, chromium_path
from tests.serving_prod_support import CLIENT_ID, ISSUER
from tests.serving_support import free_port, write_experiment
from tests.web_support import CognitoStandIn

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "reports" / "test-artifacts"
WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  e => window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline') + ' ' + e.sourceFile + ':' + e.lineNumber + ':' + e.columnNumber));
"""


def _browser_or_skip() -> str:
    exe = chromium_path()
    reason = None
    if exe is None:
        reason = "chromium not installed (infra/local/install_system_deps.sh installs Debian's chromium)"
    else:
        try:
            import playwright  # noqa: F401
        except ImportError:
            reason = "playwright is not installed (pip install -e '.[dev]')"
    if reason:
        if os.environ.get("T2S_REQUIRE_BROWSER"):
            pytest.fail(f"a browser is required here (T2S_REQUIRE_BROWSER) but {reason}")
        pytest.skip(reason)
    return exe  # type: ignore[return-value]


def serve(reg: dict[str, Any], tmp: Path, port: int | None = None, **extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """``t2s serve`` on a loopback port, configured through T2S_* variables like a deployment."""
    port = port or free_port()
    env = {**os.environ, "T2S_MLFLOW_TRACKING_URI": reg["tracking_uri"], "T2S_PROMPTS_DIR": str(reg["prompts"]),
           "T2S_CACHE_DIR": str(tmp / "cache"), "T2S_SERVE_STORE_URL": f"sqlite:///{tmp / 'serving.db'}",
           "T2S_SERVE_EXPERIMENT_FILE": str(write_experiment(tmp / "ab.yaml")),
           "T2S_SERVE_DATABASES": json.dumps({"shop": str(reg["dataset"])}), "T2S_LLM_API_KEY": "test-key",
           "T2S_LLM_MAX_RETRIES": "0", "T2S_QUERY_TIMEOUT_S": "1", "T2S_SERVE_LOG_FORMAT": "text", **extra}
    env.pop("T2S_SERVE_REDIS_URL", None)
    t2s = Path(sys.executable).with_name("t2s")
    log = tmp / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(t2s), "serve", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"t2s serve exited ({proc.returncode}): {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1, trust_env=False).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.25)
    proc.kill()
    raise RuntimeError(f"t2s serve did not start: {log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    exe = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True,
                                     args=[f for f in FLAGS if f not in ("--headless", "--remote-debugging-pipe")])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def dev_server(web_registry: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Loopback development: no sign-in (T2S_SERVE_AUTH=none)."""
    proc, url = serve(web_registry, tmp_path_factory.mktemp("dev-serve"))
    yield url
    stop(proc)


def new_page(chromium: Any, **context: Any) -> Any:
    page = chromium.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True, **context).new_page()
    page.add_init_script(WATCH)
    page.set_default_timeout(20_000)
    return page


def no_violations(page: Any, where: str) -> None:
    """axe-core (bundled in the axe-playwright-python package) finds no WCAG 2.1 A/AA violation, and the
    page broke no rule of its Content-Security-Policy."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a",
                                                                               "wcag21aa"]}})
    found = [f"{v['id']}: {v['help']} ({len(v['nodes'])}× e.g. {v['nodes'][0]['target']})"
             for v in results.response["violations"]]
    assert not found, f"{where}: accessibility violations: {found}"
    assert page.evaluate("window.__csp") == [], f"{where}: CSP violations"


def screenshot(page: Any, name: str, down_to: Any = None) -> None:
    """The page from its top (down to the bottom of ``down_to``, a locator, when given)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / name
    clip = None
    if down_to is not None:
        bottom = down_to.evaluate("el => el.getBoundingClientRect().bottom + window.scrollY")
        clip = {"x": 0, "y": 0, "width": page.viewport_size["width"], "height": int(bottom) + 16}
    page.screenshot(path=str(shot), full_page=True, clip=clip)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("T2S_UPDATE_DOCS"):
        shutil.copy(shot, ROOT / "docs" / name)


def ask(page: Any, question: str) -> Any:
    turns = page.locator("#thread > li.turn:not([aria-busy])")
    before = turns.count()
    page.fill("#question", question)
    page.click("#ask")
    turns.nth(before).wait_for()
    return turns.nth(before)


def rows_of(card: Any) -> list[list[str]]:
    return card.locator("table.data tbody tr").evaluate_all(
        "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))")


def test_ask_follow_up_chart_label_and_the_report_counts_it(chromium: Any, dev_server: str,
                                                             tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = new_page(chromium)
    page.goto(f"{dev_server}/app")
    page.wait_for_selector("#ask-view:not([hidden])")
    no_violations(page, "empty page")

    first = ask(page, "Orders per city")
    assert "GROUP BY" in first.locator("pre.sql").inner_text()
    assert first.locator("pre.sql .kw").count() >= 5  # highlighted
    assert sorted(rows_of(first)) == [["Lyon", "3"], ["Paris", "3"]]
    expect(first.locator(".view[data-kind='bar'] .bars .point")).to_have_count(2)  # one bar per city

    second = ask(page, "Only in March")
    assert "2024-03-01" in second.locator("pre.sql").inner_text()
    assert sorted(rows_of(second)) == [["Lyon", "2"], ["Paris", "1"]]
    assert "follow-up (1 earlier question given)" in second.locator(".meta").inner_text()
    second.locator(".view[data-kind='bar'] .main-svg").first.wait_for()
    second.locator("select.show-as").select_option("line")
    second.locator(".view[data-kind='line'] .scatterlayer .trace").first.wait_for()
    second.locator("select.show-as").select_option("table")
    assert second.locator(".view[data-kind='table'] .main-svg").count() == 0

    kpi = ask(page, "Total amount")
    assert kpi.locator(".kpi").inner_text() == "225.75"
    line = ask(page, "Amount per day")
    line.locator(".view[data-kind='line'] .scatterlayer .trace").first.wait_for()
    no_violations(page, "answers with charts")

    second.get_by_role("button", name="Right: this answer is correct").click()
    second.get_by_text("Thank you: recorded as right").wait_for()
    first.get_by_role("button", name="Suggest a correction").click()
    editor = first.get_by_label("Corrected SQL")
    editor.fill("SELECT city, COUNT(*) FROM customers GROUP BY city")
    first.get_by_role("button", name="Dry run").click()
    first.get_by_text("It runs: 3 rows").wait_for()
    editor.fill("DELETE FROM customers")
    first.get_by_role("button", name="Dry run").click()
    first.get_by_text("not a single read-only query").wait_for()
    editor.fill("SELECT c.city, COUNT(o.id) FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.city")
    first.get_by_role("button", name="Submit correction").click()
    first.get_by_text("recorded as wrong, with your correction").wait_for()
    no_violations(page, "labelled answers with a correction")
    screenshot(page, "web_ask.png", down_to=second)

    numbers = ask(page, "All numbers")
    assert "1000 rows (cut at the row limit), showing 1–10" in numbers.locator("caption").inner_text()
    numbers.get_by_role("button", name="Next page").click()
    assert "showing 11–20" in numbers.locator("caption").inner_text()
    numbers.get_by_role("button", name="b", exact=True).click()
    numbers.get_by_role("button", name="b", exact=True).click()
    assert numbers.locator("th[aria-sort='descending']").inner_text().strip().startswith("b")
    assert rows_of(numbers)[0][2] == "10"
    with page.expect_download() as download:
        numbers.get_by_role("button", name="Download CSV").click()
    csv_lines = Path(download.value.path()).read_text().splitlines()
    assert csv_lines[0] == "id,a,b,tag" and len(csv_lines) == 1001 and csv_lines[1].split(",")[2] == "10"

    refused = ask(page, "Please DROP TABLE customers")
    assert "refused because it is not a single read-only query" in refused.inner_text()
    slow = ask(page, "Count forever")
    assert "took too long and was stopped" in slow.inner_text()
    no_violations(page, "errors in plain words")

    report = httpx.get(f"{dev_server}/v1/experiments/ab/report", timeout=30, trust_env=False).json()
    labelled = {v["name"]: v["accuracy"]["labelled"] for v in report["variants"]}
    assert sum(labelled.values()) == 2, report
    for card in (first, second):  # each label is counted under the variant that served the answer
        assert labelled[card.locator(".meta").inner_text().split(" · ")[0]] >= 1


CHART_CASES = [  # (columns, rows, the automatic kind, the kinds the user may switch to)
    (["total"], [[225.75]], "kpi", ["table", "kpi"]),
    (["city", "orders"], [["Lyon", 3], ["Paris", 3]], "bar", ["table", "bar", "line"]),
    (["day", "amount"], [["2024-01-03", 20.5], ["2024-02-11", 7.25]], "line", ["table", "bar", "line"]),
    (["month", "n"], [["2024-01", 1], ["2024-02", 2]], "line", ["table", "bar", "line"]),
    (["year", "n"], [[2023, 1], [2024, 2]], "line", ["table", "bar", "line"]),
    (["month", "branch", "n"], [["2024-01", "A", 1], ["2024-01", "B", 2]], "line", ["table", "bar", "line"]),
    (["region", "branch", "total"], [["East", "A", 1.5], ["West", "B", 2]], "bar", ["table", "bar", "line"]),
    (["customer_id", "spent"], [[7, 10.0], [9, 3.5]], "bar", ["table", "bar", "line"]),
    (["name", "city"], [["Ann", "Paris"]], "table", ["table"]),
    (["a", "b"], [[1, 2], [3, 4]], "table", ["table"]),
    (["city", "n"], [[f"c{i}", i] for i in range(61)], "table", ["table"]),
    (["n"], [], "table", ["table"]),
]
ERROR_CASES = [  # (status, error type, Retry-After) -> words the person must read
    (429, "rate_limited", 7, "faster than the service allows. Try again in 7 seconds"),
    (503, "http_503", 30, "language model is not responding right now. Try again in 30 seconds"),
    (401, "unauthorized", None, "Sign in again"),
    (403, "csrf_failed", None, "Reload it"),
    (0, "network", None, "cannot be reached"),
    (404, "unknown_session", None, "conversation has expired"),
    (500, "internal_error", None, "went wrong on the server"),
]


def test_chart_choice_and_error_words_follow_their_rules(chromium: Any, dev_server: str) -> None:
    """The page's own modules, imported in the page, against the rules the README states."""
    page = new_page(chromium)
    page.goto(f"{dev_server}/app")
    page.wait_for_selector("#ask-view:not([hidden])")
    got = page.evaluate("""cases => import('/app/static/chart.js').then(m => cases.map(([c, r]) => {
        const p = m.possibleKinds(c, r); return [p.auto.kind, p.kinds]; }))""", [[c, r] for c, r, _, _ in CHART_CASES])
    assert got == [[kind, kinds] for _, _, kind, kinds in CHART_CASES]
    words = page.evaluate("""cases => import('/app/static/api.js').then(m => cases.map(
        ([s, t, r]) => m.plainError(s, t, 'internal text http://10.0.0.1:8000', r)))""",
                          [[s, t, r] for s, t, r, _ in ERROR_CASES])
    for (_, _, _, expected), said in zip(ERROR_CASES, words, strict=True):
        assert expected in said and "10.0.0.1" not in said, said
    outcomes = page.evaluate("""() => import('/app/static/api.js').then(m => ['guard_refused', 'timeout',
        'sql_error', 'empty', 'ok'].map(o => m.plainOutcome(o, 'why')))""")
    assert "nothing was run" in outcomes[0] and "took too long" in outcomes[1] and "could not run" in outcomes[2]
    assert outcomes[3] == "The query ran and returned no rows." and outcomes[4] == ""
    csv = page.evaluate("""() => import('/app/static/table.js').then(m => m.toCsv(['a', 'b'],
        [['=HYPERLINK("x")', -3], ['x,y', null], ['say "hi"', '@SUM(A1)']]))""")
    assert csv.split("\r\n")[:4] == ['a,b', '"\'=HYPERLINK(""x"")",-3', '"x,y",', '"say ""hi""",\'@SUM(A1)']


def test_the_reviewer_labels_with_the_keyboard(chromium: Any, dev_server: str) -> None:
    from playwright.sync_api import expect

    page = new_page(chromium)
    page.goto(f"{dev_server}/app")
    page.wait_for_selector("#ask-view:not([hidden])")
    for q in ("Customers", "Orders per city", "Total amount"):
        ask(page, q)
    page.goto(f"{dev_server}/app/review")
    page.wait_for_selector("#review-item[data-loads='1'] article")  # the random sample it opens with
    page.select_option("#review-sample", "recent")
    page.click("#review-load")
    page.wait_for_selector("#review-item[data-loads='2'] article")
    card = page.locator("#review-item article")
    first_id = card.get_attribute("data-query-id")
    page.locator("body").focus()
    page.keyboard.press("r")
    card.get_by_text("It runs:").wait_for()
    no_violations(page, "review view")
    screenshot(page, "web_review.png")
    page.keyboard.press("n")
    expect(card).not_to_have_attribute("data-query-id", first_id)  # labelled, then on to the next
    second_id = card.get_attribute("data-query-id")
    page.keyboard.press("y")
    expect(card).not_to_have_attribute("data-query-id", second_id)
    labels = {i["query_id"]: i["label"] for i in httpx.get(
        f"{dev_server}/v1/review/queries", params={"sample": "recent", "unreviewed": False, "limit": 200},
        timeout=30, trust_env=False).json()["items"]}
    assert labels[first_id]["correct"] is False and labels[second_id]["correct"] is True


def test_sign_in_through_the_hosted_ui_keeps_tokens_out_of_the_browser(
        chromium: Any, web_registry: dict[str, Any], tmp_path: Path) -> None:
    port = free_port()
    app_url = f"http://127.0.0.1:{port}"
    cognito = CognitoStandIn(redirect_uri=f"{app_url}/app/callback")
    cognito.user = {"sub": "ann", "groups": ["reviewer"]}
    env = {"T2S_SERVE_AUTH": "required", "T2S_SERVE_JWKS_URL": cognito.jwks_url, "T2S_SERVE_JWT_ISSUER": ISSUER,
           "T2S_SERVE_JWT_CLIENT_IDS": json.dumps([CLIENT_ID]), "T2S_SERVE_OAUTH_DOMAIN": cognito.url,
           "T2S_SERVE_OAUTH_CLIENT_ID": CLIENT_ID, "T2S_SERVE_OAUTH_REDIRECT_URL": f"{app_url}/app/callback"}
    try:
        proc, url = serve(web_registry, tmp_path, port, **env)
    except Exception:
        cognito.close()
        raise
    try:
        page = new_page(chromium)
        page.goto(f"{url}/app")
        page.get_by_role("link", name="Sign in").click()
        page.wait_for_selector("#ask-view:not([hidden])")
        assert page.url == f"{url}/app" and "code=" not in page.url
        assert "Signed in as jwt:ann" in page.locator("#who").inner_text()
        cookies = {c["name"]: c for c in page.context.cookies()}
        session = cookies["__Host-t2s-session"]
        assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
        assert "__Host-t2s-login" not in cookies
        stored = page.evaluate("[document.cookie, JSON.stringify(localStorage), JSON.stringify(sessionStorage)]")
        assert stored == ["", "{}", "{}"]
        assert all(tok not in page.content() for tok in cognito.issued)
        card = ask(page, "Customers")
        card.get_by_role("button", name="Right: this answer is correct").click()
        card.get_by_text("Thank you: recorded as right").wait_for()
        query_id = card.get_attribute("data-query-id")
        no_violations(page, "signed in")
        forged = page.evaluate("""q => fetch('/v1/feedback', {method: 'POST', headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({query_id: q, correct: false})}).then(r => r.status)""", query_id)
        assert forged == 403  # no CSRF token
        assert page.locator("#nav-review").is_visible()

        page.get_by_role("button", name="Sign out").click()
        page.wait_for_selector("#signed-out:not([hidden])")
        assert cognito.calls.get("/logout") == 1 and cognito.calls.get("/oauth2/revoke") == 1
        old = httpx.get(f"{url}/v1/sessions/x", cookies={"__Host-t2s-session": session["value"]}, trust_env=False)
        assert old.status_code == 401  # the server forgot the session: the old cookie is worth nothing
    finally:
        stop(proc)
        cognito.close()
    import sqlite3

    with sqlite3.connect(tmp_path / "serving.db") as db:
        assert db.execute("SELECT principal, source, correct FROM feedback WHERE query_id = ?",
                          (query_id,)).fetchone() == ("jwt:ann", "owner", 1)

