"""The experiment report: SRM, always-valid lift, guardrails, empty data, escaping, and the page in Chromium.

Statistical behaviour is checked by simulation: rates over many seeded experiments, printed with ``-s``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.experiment_report import RECORD_COLUMNS, VariantWeight, build_report, render_html
from serving.sequential import mixture_sprt_path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "reports" / "test-artifacts"
AB = [VariantWeight(name="champion", weight=50, model_version="3", prompt_version="sql@2"),
      VariantWeight(name="challenger", weight=50, model_version="4", prompt_version="sql@3")]


def make_records(variant: np.ndarray, user: list[str | None], correct: np.ndarray | list | None = None, *,
                 outcome: list[str] | None = None, latency: np.ndarray | None = None,
                 random_assignment: np.ndarray | None = None) -> pd.DataFrame:
    """Rows in the contract's shape, one minute apart, in the given (time) order."""
    n = len(variant)
    labels = pd.array([None] * n if correct is None else list(correct), dtype="boolean")
    return pd.DataFrame({
        "query_id": [f"q{i}" for i in range(n)],
        "ts": pd.date_range("2026-11-01", periods=n, freq="min", tz="UTC"),
        "variant": pd.Series(variant, dtype=object),
        "user_hash": pd.Series(user, dtype=object),
        "random_assignment": (np.array([u is None for u in user]) if random_assignment is None
                              else random_assignment),
        "outcome": outcome if outcome is not None else ["ok"] * n,
        "latency_ms": latency if latency is not None else np.full(n, 100.0),
        "rows_returned": pd.array([1] * n, dtype="Int64"),
        "correct": labels,
    })


def simulate_ab(rng: np.random.Generator, users: int, p_control: float, p_treatment: float,
                share: float = 0.5) -> pd.DataFrame:
    """One labelled request per user; users split by ``share`` (challenger)."""
    treat = rng.random(users) < share
    correct = rng.random(users) < np.where(treat, p_treatment, p_control)
    return make_records(np.where(treat, "challenger", "champion"), [f"u{i}" for i in range(users)], correct)


# --- sample-ratio mismatch -----------------------------------------------------------------------------

def _srm_flag_rate(rng: np.random.Generator, weights: tuple[float, float], true_share: float, users: int,
                   seeds: int) -> float:
    variants = [VariantWeight(name="champion", weight=weights[0]),
                VariantWeight(name="challenger", weight=weights[1])]
    flagged = 0
    for _ in range(seeds):
        treat = rng.random(users) < true_share
        recs = make_records(np.where(treat, "challenger", "champion"), [f"u{i}" for i in range(users)])
        report = build_report("srm", variants, "champion", recs, {})
        assert report.srm.applicable
        flagged += report.srm.flagged
    return flagged / seeds


def test_srm_flags_a_broken_split_and_not_a_healthy_one() -> None:
    rng = np.random.default_rng(7)
    healthy = _srm_flag_rate(rng, (50, 50), 0.5, 2000, 40)
    healthy_uneven = _srm_flag_rate(rng, (90, 10), 0.1, 2000, 40)
    broken = _srm_flag_rate(rng, (50, 50), 0.45, 4000, 40)       # a fifth of challenger users not logged
    broken_uneven = _srm_flag_rate(rng, (90, 10), 0.13, 4000, 40)
    print(f"SRM flag rate: healthy {healthy:.3f}, healthy 90/10 {healthy_uneven:.3f}, "
          f"broken 55/45 {broken:.3f}, broken 87/13 {broken_uneven:.3f}")
    assert healthy <= 0.025 and healthy_uneven <= 0.025    # expected 0.001
    assert broken >= 0.95 and broken_uneven >= 0.9


def test_flagged_srm_marks_results_untrustworthy_and_comes_first() -> None:
    rng = np.random.default_rng(1)
    recs = simulate_ab(rng, 3000, 0.6, 0.6, share=0.4)
    report = build_report("broken", AB, "champion", recs, {})
    assert report.srm.flagged and not report.trustworthy
    assert "not trustworthy" in report.headline
    page = render_html(report)
    assert page.index('id="srm"') < page.index('id="untrusted"') < page.index('id="headline"') \
        < page.index('id="variants"')
    assert "not trustworthy" in page.split('id="variants"')[1]


def test_srm_skips_too_few_users_and_stopped_experiments() -> None:
    recs = make_records(np.array(["champion", "challenger", "champion"]), ["a", "b", "c"])
    assert not build_report("e", AB, "champion", recs, {}).srm.applicable
    rng = np.random.default_rng(2)
    stopped = build_report("e", AB, "champion", simulate_ab(rng, 1000, 0.6, 0.6, share=0.1), {},
                           status="stopped:champion")
    assert not stopped.srm.applicable and not stopped.srm.flagged and "stopped" in stopped.srm.note


# --- always-valid lift ---------------------------------------------------------------------------------

def aa_false_positive_rates(experiments: int, users: int, look_every: int, alpha: float, share: float,
                            seed: int) -> tuple[float, float, float]:
    """A/A experiments, looked at after every ``look_every`` users: the share of experiments in which
    the sequential and the naive fixed-horizon test ever reach p <= alpha, and the naive test's rate when
    read once at the end. Users send 1-4 labelled requests and differ in how often they get correct
    answers (clustered data)."""
    from statsmodels.stats.proportion import test_proportions_2indep

    rng = np.random.default_rng(seed)
    seq_hits = naive_hits = once_hits = 0
    for _ in range(experiments):
        per_user = rng.integers(1, 5, users)
        user_p = rng.beta(6, 4, users)
        treat_user = rng.random(users) < share
        unit = np.repeat(np.arange(users), per_user)
        treat = treat_user[unit]
        correct = rng.random(len(unit)) < user_p[unit]
        path = mixture_sprt_path(treat, unit, correct, alpha=alpha)
        ends = np.cumsum(per_user)[look_every - 1::look_every] - 1       # last request of each look
        seq_hits += bool((path.p_value[ends] <= alpha).any())
        kt, nt = np.cumsum(correct & treat)[ends], np.cumsum(treat)[ends]
        kc, nc = np.cumsum(correct & ~treat)[ends], np.cumsum(~treat)[ends]
        naive_p = [test_proportions_2indep(a, b, c, d, method="score").pvalue
                   for a, b, c, d in zip(kt, nt, kc, nc, strict=True)]
        naive_hits += min(naive_p) <= alpha
        once_hits += naive_p[-1] <= alpha
    return seq_hits / experiments, naive_hits / experiments, once_hits / experiments


def test_sequential_false_positive_rate_stays_below_alpha_under_peeking() -> None:
    seq, naive, once = aa_false_positive_rates(experiments=300, users=2000, look_every=100, alpha=0.05,
                                               share=0.5, seed=11)
    print(f"A/A, 300 experiments x 20 looks: sequential FPR {seq:.3f}, naive fixed-horizon FPR {naive:.3f} "
          f"(read once at the end: {once:.3f})")
    assert seq <= 0.05 + 0.02
    assert naive >= 0.15 and naive >= once + 0.1     # peeking, not only clustering, inflates it


@pytest.mark.slow
def test_sequential_false_positive_rate_long_uneven_experiments() -> None:
    seq, naive, once = aa_false_positive_rates(experiments=2000, users=5000, look_every=100, alpha=0.05,
                                               share=0.2, seed=12)
    print(f"A/A 80/20, 2000 experiments x 50 looks: sequential FPR {seq:.3f}, naive FPR {naive:.3f} "
          f"(read once: {once:.3f})")
    assert seq <= 0.05 + 0.01
    assert naive >= 0.2


def test_report_shows_the_running_minimum_p_value_at_each_look() -> None:
    rng = np.random.default_rng(5)
    recs = simulate_ab(rng, 1000, 0.6, 0.6)
    labelled = recs.sort_values("ts")
    path = mixture_sprt_path((labelled["variant"] == "challenger").to_numpy(),
                             np.arange(len(labelled)), labelled["correct"].to_numpy(dtype=bool), alpha=0.05)
    previous = 1.0
    for end in (200, 400, 600, 800, 1000):
        lift = build_report("e", AB, "champion", recs.iloc[:end], {}).variants[1].lift
        assert lift is not None and lift.sequential is not None
        assert lift.sequential.p_value == pytest.approx(path.p_value[end - 1])
        assert lift.sequential.p_value <= previous
        previous = lift.sequential.p_value
        ci = lift.sequential.ci
        assert ci is not None and ci.low <= ci.high


def test_a_real_effect_is_detected_in_both_directions() -> None:
    rng = np.random.default_rng(3)
    better = worse = 0
    for _ in range(10):
        up = build_report("e", AB, "champion", simulate_ab(rng, 4000, 0.60, 0.70), {}).variants[1].lift
        down = build_report("e", AB, "champion", simulate_ab(rng, 4000, 0.70, 0.60), {}).variants[1].lift
        better += up.verdict == "better than control"
        worse += down.verdict == "worse than control"
        assert up.sequential.p_value >= up.fixed_horizon.p_value     # the price of peeking
    print(f"0.60 -> 0.70 with 4000 users: detected {better}/10 better, {worse}/10 worse")
    assert better >= 9 and worse >= 9


# --- figures, edge cases -------------------------------------------------------------------------------

def test_empty_records_give_a_valid_no_data_report() -> None:
    empty = make_records(np.array([], dtype=object), [])
    assert list(empty.columns) == list(RECORD_COLUMNS)
    report = build_report("fresh", AB, "champion", empty, {"champion": 0.7, "challenger": None})
    body = json.loads(json.dumps(report.model_dump(mode="json"), allow_nan=False))
    assert body["has_data"] is False and body["data_from"] is None
    assert report.headline.startswith("No data yet")
    assert not report.srm.applicable and not report.srm.flagged
    assert all(v.accuracy.requests == 0 and v.accuracy.online_accuracy is None for v in report.variants)
    assert report.variants[1].lift.difference is None
    page = render_html(report)
    assert 'id="no-data"' in page and "70.0%" in page


def test_untyped_frames_and_users_served_by_two_variants() -> None:
    bare = build_report("e", AB, "champion", pd.DataFrame(columns=list(RECORD_COLUMNS)), {})
    assert not bare.has_data and bare.headline.startswith("No data yet")
    rows = [["q1", "2026-11-01T10:00:00Z", "champion", "u1", False, "ok", 12.0, 3, True],
            ["q2", "2026-11-01T10:01:00Z", "challenger", "u1", False, "ok", 15.0, None, None],
            ["q3", "2026-11-01T10:02:00Z", "champion", None, True, "mystery", 9.0, None, False]]
    report = build_report("e", AB, "champion", pd.DataFrame(rows, columns=list(RECORD_COLUMNS)), {})
    assert report.srm.observed_users == {"champion": 1, "challenger": 0}
    assert any("more than one variant" in n for n in report.notes)
    assert any("mystery" in n for n in report.notes)
    assert report.unassigned.accuracy.labelled == 1
    json.dumps(report.model_dump(mode="json"), allow_nan=False)


def test_a_variant_without_labels() -> None:
    rng = np.random.default_rng(4)
    recs = simulate_ab(rng, 600, 0.6, 0.6)
    recs.loc[recs["variant"] == "challenger", "correct"] = pd.NA
    report = build_report("e", AB, "champion", recs, {})
    ch = report.variants[1]
    assert ch.accuracy.requests > 250 and ch.accuracy.labelled == 0
    assert ch.accuracy.label_coverage == 0 and ch.accuracy.online_accuracy is None
    assert ch.lift.verdict == "no labels yet in this variant" and ch.lift.sequential is None
    assert report.variants[0].accuracy.online_accuracy is not None
    assert "no labels yet" in render_html(report)


def test_figures_guardrails_and_requests_without_user_id() -> None:
    n = 20
    variant = np.array(["champion", "challenger"] * (n // 2))
    users: list[str | None] = [f"u{i % 8}" for i in range(n)]
    users[-4:] = [None] * 4                      # four requests without a user id
    outcome = ["ok"] * n
    outcome[0], outcome[2], outcome[4], outcome[1] = "sql_error", "empty", "guard_refused", "timeout"
    correct = [True, True, False, None] * 5
    recs = make_records(variant, users, correct, outcome=outcome, latency=np.arange(1, n + 1, dtype=float))
    report = build_report("e", AB, "champion", recs, {"champion": 0.81})
    champ, chall = report.variants
    assert (champ.users, champ.accuracy.requests, chall.accuracy.requests) == (4, 8, 8)
    assert champ.accuracy.labelled == 8 and champ.accuracy.correct == 4
    assert chall.accuracy.labelled == 4 and chall.accuracy.label_coverage == 0.5
    assert champ.guardrails.sql_error_rate == pytest.approx(1 / 8)
    assert champ.guardrails.empty_rate == pytest.approx(1 / 8)
    assert champ.guardrails.guard_refused_rate == pytest.approx(1 / 8)
    assert chall.guardrails.timeout_rate == pytest.approx(1 / 8)
    assert champ.guardrails.latency_p50_ms == pytest.approx(8.0)               # 1,3,...,15
    assert champ.offline_accuracy == 0.81 and chall.offline_accuracy is None
    ci = champ.accuracy.online_accuracy_ci
    assert ci.low < 0.5 < ci.high
    assert report.unassigned.accuracy.requests == 4
    assert report.unassigned.requests_by_variant == {"challenger": 2, "champion": 2}
    assert sum(report.srm.observed_users.values()) == 8


def test_contract_violations_are_refused_with_the_fix() -> None:
    recs = make_records(np.array(["champion"]), ["u"])
    with pytest.raises(ValueError, match="control 'baseline'"):
        build_report("e", AB, "baseline", recs, {})
    with pytest.raises(ValueError, match="correct"):
        build_report("e", AB, "champion", recs.drop(columns=["correct"]), {})
    with pytest.raises(ValueError, match="status"):
        build_report("e", AB, "champion", recs, {}, status="stopped:nobody")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_hostile_names_are_escaped() -> None:
    evil_exp = "<script>alert('x')</script>"
    evil = ['"><img src=x onerror=alert(1)>', "</title><svg onload=alert(2)>&amp;"]
    variants = [VariantWeight(name=evil[0], weight=1, model_version="<b>m</b>", prompt_version="p\"'<"),
                VariantWeight(name=evil[1], weight=1)]
    rng = np.random.default_rng(8)
    recs = simulate_ab(rng, 400, 0.6, 0.6).replace({"variant": {"champion": evil[0], "challenger": evil[1]}})
    page = render_html(build_report(evil_exp, variants, evil[0], recs, {evil[0]: 0.5}))
    parser = _Tags()
    parser.feed(page)
    assert not parser.tags & {"script", "img", "b", "iframe", "link"}
    assert not [a for a, _ in parser.attrs if a.startswith("on")]
    text = "".join(parser.text)
    assert evil_exp in text and evil[0] in text and evil[1] in text
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page


# --- the page in a real browser ------------------------------------------------------------------------

def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        reason = "chromium not installed (infra/local/install_system_deps.sh installs Debian's chromium)"
        if os.environ.get("T2S_REQUIRE_BROWSER"):
            pytest.fail(f"a browser is required here (T2S_REQUIRE_BROWSER) but {reason}")
        pytest.skip(reason)
    return exe


def _run_chromium(exe: str, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="t2s-chromium-") as profile:
        return subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120, check=True)


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    exe = _chromium()
    rng = np.random.default_rng(9)
    recs = simulate_ab(rng, 3000, 0.62, 0.71)
    report = build_report("nightly-sql", AB, "champion", recs, {"champion": 0.64, "challenger": 0.69})
    page = tmp_path / "experiment.html"
    page.write_text(render_html(report), encoding="utf-8")
    dom = _run_chromium(exe, "--dump-dom", page.as_uri()).stdout

    table = dom.split('id="variants"', 1)[1].split("</table>", 1)[0]
    rows: dict[str, str] = {}
    for chunk in table.split("<tr")[1:]:
        if 'data-variant="' in chunk:
            rows[chunk.split('data-variant="', 1)[1].split('"', 1)[0]] = chunk.split("</tr>", 1)[0]
    for v in report.variants:
        row = rows[v.name]
        assert f">{v.users}<" in row and f">{v.accuracy.requests}<" in row
        assert f"{v.accuracy.online_accuracy * 100:.1f}%" in row
        assert f"{v.offline_accuracy * 100:.1f}%" in row
    assert f"{report.variants[1].lift.difference * 100:+.1f} pp" in rows["challenger"]
    assert "better than control" in rows["challenger"]
    assert dom.index('id="srm"') < dom.index('id="variants"') and "<svg" in dom

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "experiment_report.png"
    shot.unlink(missing_ok=True)
    _run_chromium(exe, f"--screenshot={shot}", "--window-size=1200,1400", page.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (1200, 1400)
    print(f"screenshot: {shot}")
