"""The README's screenshots, taken from `make demo`'s own data and checked while they are taken.

After `make demo`: serves its MLflow store (``mlflow.db``) with ``mlflow server``, opens headless Chromium
(:mod:`tests.browser`) and, for each shot, waits until the page shows what the README says it shows —
failing otherwise — before writing the PNG:

- ``docs/mlflow-evaluation-runs.png``: experiment ``t2s/bank``'s evaluation runs, opened with the link
  ``t2s promote`` prints: the sweep, its variant runs (``v8 · bank`` …) and the champion's run selected;
- ``docs/mlflow-review-compare.png``: the champion's questions compared with the most accurate other variant
  of its sweep, question by question;
- ``docs/report-pareto.png``: the HTML report's accuracy-against-cost charts with the serving budget.

    python -m tests.demo_screenshots [--out docs]
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from pathlib import Path

from tests.browser import Browser
from tests.mlflow_ui import serve, stop

ROOT = Path(__file__).resolve().parents[1]
CHECKED_ROWS = ("Array.from(document.querySelectorAll('input[type=checkbox]')).filter(c => c.checked).map(c => {"
                " let e = c; for (let i = 0; i < 10 && e; i++) { e = e.parentElement;"
                " if (e && e.getAttribute('role') === 'row') break; } return e ? e.textContent : ''; })")


def _demo_runs() -> dict[str, str]:
    """Ids and names the shots need: the bank experiment, the champion's run there, its runner-up."""
    from mlflow import MlflowClient

    from evals.records import VariantRun

    client = MlflowClient()
    champion = client.get_model_version_by_alias("t2s-generator", "champion")
    champ_run = client.get_run(champion.tags["t2s.variant_run_id"])
    exp_id = champ_run.info.experiment_id
    siblings = client.search_runs([exp_id], f"tags.`t2s.kind` = 'variant' and tags.`t2s.sweep_id` = "
                                            f"'{champ_run.data.tags['t2s.sweep_id']}'")
    others = [r for r in siblings if r.info.run_id != champ_run.info.run_id]
    runner_up = max(others, key=lambda r: (r.data.metrics.get("execution_accuracy", 0), r.info.run_name))
    folder = ROOT / "reports" / "eval" / "bank"
    questions = [i.question for i in VariantRun.read(next(
        p.parent for p in folder.rglob("variant.json")
        if json.loads(p.read_text())["prompt"] == champ_run.data.tags["t2s.prompt"])).items]
    return {"exp_id": exp_id, "champion": champ_run.info.run_id, "champion_name": champ_run.info.run_name,
            "other": runner_up.info.run_id, "other_name": runner_up.info.run_name,
            "first_question": questions[0], "n": str(len(questions))}


def _close_assistant(page) -> None:  # type: ignore[no-untyped-def]
    page.click('[data-component-id="mlflow.assistant.chat_panel.close"]')
    time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    from t2s.settings import get_settings
    from t2s.tracking import configure_mlflow

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_mlflow(settings)
    runs = _demo_runs()
    e = runs["exp_id"]
    server, url = serve(ROOT, settings.mlflow_tracking_uri)
    try:
        with Browser(1600, 1000) as browser:
            page = browser.page()
            page.goto(f"{url}/#/experiments/{e}/evaluation-runs?selectedRunUuid={runs['champion']}")
            page.wait_for_text(runs["champion_name"], runs["other_name"], "execution_accuracy", "sweep ")
            checked = page.evaluate(CHECKED_ROWS)
            assert len(checked) == 1 and runs["champion_name"] in checked[0], checked
            _close_assistant(page)
            page.screenshot(args.out / "mlflow-evaluation-runs.png")

            page.goto("about:blank")
            page.goto(f"{url}/#/experiments/{e}/runs/{runs['champion']}/traces?compareToRunUuid={runs['other']}")
            text = page.wait_for_text("compare to", runs["first_question"], "execution_match",
                                      f"{runs['n']} of {runs['n']}")
            assert "STRING" not in text  # no string assessment: the arrows mean better/worse
            _close_assistant(page)
            page.screenshot(args.out / "mlflow-review-compare.png")

            page.goto((ROOT / "reports" / "compare" / "report.html").as_uri())
            page.wait_for_text("Accuracy against cost", "p95 seconds per answer", "Front:")
            box = page.evaluate("(() => { const r = document.getElementById('pareto').getBoundingClientRect();"
                                " return [r.x, r.y + window.scrollY, r.width, r.height]; })()")
            shot = page.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": {
                "x": box[0], "y": box[1], "width": box[2], "height": box[3], "scale": 1}})
            (args.out / "report-pareto.png").write_bytes(base64.b64decode(shot["data"]))
    finally:
        stop(server)
    for name in ("mlflow-evaluation-runs.png", "mlflow-review-compare.png", "report-pareto.png"):
        print(args.out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
