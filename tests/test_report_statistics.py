"""Statistics in the report, end to end from hand-made fixture runs (tests/fixtures/report/make_runs.py:
`stat_values`): stats.json against scipy.stats.ttest_rel on the per-seed means, Holm across the
setting, the resolved marks in the ablation table (Markdown, LaTeX, HTML), the trial-spread table,
the summary sentences, the README region, and n = 1."""
from __future__ import annotations

import importlib.util
import json
import re
import statistics
import sys
from pathlib import Path

import pytest
from scipy import stats as sps

_FIXTURES = Path(__file__).parent / "fixtures" / "report" / "make_runs.py"
if "report_make_runs" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("report_make_runs", _FIXTURES)
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules["report_make_runs"] = _mod
    _spec.loader.exec_module(_mod)
fx = sys.modules["report_make_runs"]

from vireid.harness import cli  # noqa: E402
from vireid.harness.report import ReportError, build_report  # noqa: E402
from vireid.harness.report.summary import README_MARKERS, check_readme, readme_region  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KEYS = {"variant", "reference", "protocol", "rerank", "metric", "diff", "ci_low", "ci_high", "p", "p_holm", "n",
        "g", "mdd", "resolved"}
LABELS = {v: label for v, label, _, _ in fx.STAT_VARIANTS}
# (variant, reference, kinds) the report must test, in its order.
PAIRS = [("step", "baseline", ["baseline", "previous"]), ("flat", "baseline", ["baseline"]),
         ("flat", "step", ["previous"]), ("agw", "baseline", ["baseline"])]
README = ("# Project\n\nIntro text.\n\n## Results\n\n" + README_MARKERS[0] + "\nold hand-typed table\n"
          + README_MARKERS[1] + "\n\nText after.\n")


def _md_table(md: str, title: str) -> list[list[str]]:
    start = md.index(f"**Table: {title}**")
    rows = []
    for line in md[start:].splitlines()[1:]:
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(set(c) <= set(":-") for c in cells):
                rows.append(cells)
        elif rows:
            break
    return rows


def _holm_by_hand(p: list[float]) -> list[float]:
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("stats")
    fx.make_value_runs(root / "runs")
    readme = root / "README.md"
    readme.write_text(README)
    written = build_report(root / "runs", root / "out", published_csv=None, readme=readme)
    return {"root": root, "written": written, "out": root / "out", "readme": readme,
            "md": (root / "out" / "report.md").read_text(), "html": (root / "out" / "report.html").read_text(),
            "stats": json.loads((root / "out" / "stats.json").read_text())}


def _seed_means(variant: str, metric: str) -> dict:
    return {seed: statistics.fmean(v[metric]) for seed, v in fx.stat_values()[variant].items()}


def test_stats_json_against_scipy(built):
    entries = built["stats"]
    assert isinstance(entries, list) and len(entries) == len(PAIRS) * 2
    assert [(e["variant"], e["reference"], e["kind"]) for e in entries[::2]] == PAIRS
    for e in entries:
        assert KEYS <= set(e)
        assert e["protocol"] == "sysu/all/single" and e["rerank"] is False
        metric = {"R1": "r1", "mAP": "mAP"}[e["metric"]]
        a, b = _seed_means(e["variant"], metric), _seed_means(e["reference"], metric)
        seeds = sorted(set(a) & set(b))
        assert e["seeds"] == seeds and e["n"] == len(seeds)  # seeds are the replicates, not the 3 trials
        x, y = [a[s] for s in seeds], [b[s] for s in seeds]
        ref = sps.ttest_rel(x, y)
        ci = ref.confidence_interval(0.95)
        assert e["diff"] == pytest.approx(statistics.fmean(x) - statistics.fmean(y))
        assert e["p"] == pytest.approx(ref.pvalue, rel=1e-9)
        assert (e["ci_low"], e["ci_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
        d = [u - v for u, v in zip(x, y)]
        n = len(d)
        assert e["g"] == pytest.approx((1 - 3 / (4 * (n - 1) - 1)) * statistics.fmean(d) / statistics.stdev(d))
    agw = [e for e in entries if e["variant"] == "agw"]
    assert all(e["n"] == 3 and e["unpaired_seeds"] == [3, 4] for e in agw)
    # Holm across the setting's 8 comparisons.
    expected = _holm_by_hand([e["p"] for e in entries])
    assert [e["p_holm"] for e in entries] == pytest.approx(expected)
    assert all(e["family_size"] == 8 for e in entries)
    for e in entries:
        assert e["resolved"] == (e["p_holm"] < 0.05)
    verdict = {(e["variant"], e["reference"], e["metric"]): e["resolved"] for e in entries}
    assert verdict[("step", "baseline", "R1")] and verdict[("step", "baseline", "mAP")]
    assert verdict[("flat", "baseline", "R1")]
    assert not verdict[("flat", "step", "R1")] and not verdict[("flat", "step", "mAP")]
    assert not verdict[("agw", "baseline", "R1")]


MAIN_TITLE = "synthetic (SYSU-MM01 layout): main protocols (single-shot), re-ranking off"


def test_ablation_marks(built):
    md = built["md"]
    rows = _md_table(md, MAIN_TITLE)
    header, body = rows[0], {r[0]: r for r in rows[1:]}
    assert header[0] == "Variant" and header[1] == "All-search · R1"
    col = {h.split(" · ")[1]: i for i, h in enumerate(header) if " · " in h}
    stats = {(e["variant"], e["reference"], e["metric"]): e for e in built["stats"]}
    for variant in ("step", "flat"):
        for metric in ("R1", "mAP"):
            cell = body[LABELS[variant]][col[metric]]
            prev = "step" if variant == "flat" else "baseline"
            want = ("†" if stats[(variant, prev, metric)]["resolved"] else "") + \
                   ("‡" if stats[(variant, "baseline", metric)]["resolved"] else "")
            assert re.sub(r"^[\d.*± ]+", "", cell) == want, (variant, metric, cell)
    assert body[LABELS["step"]][col["R1"]].endswith("†‡")
    assert body[LABELS["flat"]][col["R1"]].endswith("‡") and "†" not in body[LABELS["flat"]][col["R1"]]
    assert not any(ch in body[LABELS["baseline"]][col["R1"]] for ch in "†‡")
    assert not any(ch in body[LABELS[v]][col["R10"]] for v in ("step", "flat") for ch in "†‡")  # untested
    table_part = md[md.index(f"**Table: {MAIN_TITLE}**"):]
    legend = table_part[:table_part.index("Files:")]
    assert "† = the difference to the row above is resolved" in legend
    assert "A tested cell without a mark is not resolved" in legend and "8 tested comparisons" in legend
    tex = next((built["out"] / "tables").glob("main_*rr-off*.tex")).read_text()
    assert r"$^{\dagger\ddagger}$" in tex and r"$^{\ddagger}$" in tex
    assert "<sup>†‡</sup>" in built["html"]


def test_stats_table_and_mdd(built):
    md = built["md"]
    rows = _md_table(md, "Paired differences: synthetic (SYSU-MM01 layout), re-ranking off")
    assert rows[0] == ["Comparison", "Reference", "Protocol", "Metric", "n", "Diff", "95 % CI", "p", "p (Holm)",
                       "g", "MDD", "Verdict"]
    for row, e in zip(rows[1:], built["stats"]):
        assert row[0] == f"{LABELS[e['variant']]} − {LABELS[e['reference']]}" and row[3] == e["metric"]
        assert row[5] == f"{e['diff']:+.2f}" and row[6] == f"[{e['ci_low']:+.2f}, {e['ci_high']:+.2f}]"
        assert row[11].strip("*") == ("resolved" if e["resolved"] else "not resolved")
        assert row[10] == f"{e['mdd']:.2f}"
    mdd = _md_table(md, "Minimum detectable difference at the study's seed count")
    assert [r[3] for r in mdd[1:]] == ["R1", "mAP"] and all(r[4] == "4" for r in mdd[1:])
    # Pooled over the n = 4 comparisons (AGW pairs only 3 seeds).
    from vireid.harness.report.stats import mdd as mdd_of

    for row, metric in zip(mdd[1:], ("R1", "mAP")):
        sds = [e["sd"] for e in built["stats"] if e["metric"] == metric and e["n"] == 4]
        pooled = (sum(s * s for s in sds) / len(sds)) ** 0.5
        assert row[5] == str(len(sds)) and row[7] == f"{mdd_of(pooled, 4):.2f}"


def test_trial_spread_is_within_run(built):
    rows = _md_table(built["md"], "Gallery-trial spread within runs: synthetic (SYSU-MM01 layout), re-ranking off")
    assert rows[0] == ["Variant", "Protocol", "Seeds", "Trials", "R1 trial sd", "R1 seed sd", "mAP trial sd",
                       "mAP seed sd"]
    values = fx.stat_values()
    for row in rows[1:]:
        variant = next(v for v, label in LABELS.items() if label == row[0])
        runs = values[variant]
        assert row[2] == str(len(runs)) and row[3] == "3"
        trial_sd = statistics.fmean(statistics.stdev(v["r1"]) for v in runs.values())
        seed_sd = statistics.stdev(statistics.fmean(v["r1"]) for v in runs.values())
        assert row[4] == f"{trial_sd:.2f}" and row[5] == f"{seed_sd:.2f}"


def test_summary_sentences_and_readme(built):
    md, summary = built["md"], (built["out"] / "summary.md").read_text()
    by = {(e["variant"], e["reference"], e["metric"]): e for e in built["stats"]}
    e = by[("step", "baseline", "R1")]
    sentence = (f"+ step − Baseline (vs the baseline, the row above): R1 {e['diff']:+.2f} "
                f"[{e['ci_low']:+.2f}, {e['ci_high']:+.2f}], p ")
    lines = [line[2:] for line in summary.splitlines() if line.startswith("- ")]
    assert len(lines) == len(PAIRS)
    assert lines[0].startswith(sentence) and lines[0].endswith("; n = 4 seeds.")
    assert "flat − + step (vs the row above)" in lines[2] and lines[2].count("not resolved") == 2
    assert lines[3].endswith("; n = 3 seeds.")
    for line in lines:
        assert f"- {line}" in md  # the same sentences in the report
    table = [line for line in summary.splitlines() if line.startswith("|")]
    assert "\n".join(table) in md  # the same table in the report
    assert "‡" in table[3] and "+ step" in table[3]  # resolved vs the baseline
    # The README region is exactly the summary; the rest of the README is untouched.
    text = built["readme"].read_text()
    assert readme_region(built["readme"]) == summary
    assert text.startswith("# Project\n\nIntro text.\n\n## Results\n\n" + README_MARKERS[0] + "\n")
    assert text.endswith(README_MARKERS[1] + "\n\nText after.\n") and "old hand-typed" not in text
    assert built["written"]["readme"] == built["readme"]
    # Rebuilding writes the same region (idempotent).
    build_report(built["root"] / "runs", built["root"] / "out2", published_csv=None, readme=built["readme"])
    assert built["readme"].read_text() == text


def test_readme_without_region_is_refused_before_writing(tmp_path):
    fx.make_value_runs(tmp_path / "runs")
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n")
    with pytest.raises(ReportError, match=r"README.md: found 0 results-region begin marker\(s\)"):
        build_report(tmp_path / "runs", tmp_path / "out", published_csv=None, readme=readme)
    assert not (tmp_path / "out").exists()
    readme.write_text(README_MARKERS[1] + "\n" + README_MARKERS[0] + "\n")
    with pytest.raises(ReportError, match="below the begin marker"):
        check_readme(readme)
    code = cli.main(["report", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--no-published",
                     "--readme", str(tmp_path / "missing.md")])
    assert code == 2 and not (tmp_path / "out").exists()
    code = cli.main(["report", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--no-published",
                     "--stats-metrics", "r1,top5"])
    assert code == 2


def test_cli_writes_readme_and_stats_metrics(tmp_path, capsys):
    fx.make_value_runs(tmp_path / "runs")
    readme = tmp_path / "README.md"
    readme.write_text(README)
    code = cli.main(["report", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--no-published",
                     "--readme", str(readme), "--stats-metrics", "mAP"])
    assert code == 0 and "results region" in capsys.readouterr().out
    entries = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert {e["metric"] for e in entries} == {"mAP"} and all(e["family_size"] == 4 for e in entries)
    assert readme_region(readme) == (tmp_path / "out" / "summary.md").read_text()
    # --from-report copies a built report's summary without rebuilding anything.
    other = tmp_path / "OTHER.md"
    other.write_text(README)
    before = sorted(p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert cli.main(["report", "--from-report", str(tmp_path / "out"), "--readme", str(other)]) == 0
    assert other.read_text() == readme.read_text()
    assert sorted(p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*") if p.is_file()) == before
    assert cli.main(["report", "--from-report", str(tmp_path / "nowhere"), "--readme", str(other)]) == 2
    assert "summary.md not found" in capsys.readouterr().err
    assert cli.main(["report", "--from-report", str(tmp_path / "out")]) == 2
    assert cli.main(["report", "--out", str(tmp_path / "x")]) == 2 and not (tmp_path / "x").exists()


def test_one_seed_renders_na(tmp_path):
    values = {v: {0: runs[0]} for v, runs in fx.stat_values().items()}
    fx.make_value_runs(tmp_path / "runs", values)
    build_report(tmp_path / "runs", tmp_path / "out", published_csv=None)
    entries = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert entries and all(e["n"] == 1 and e["p"] is None and e["p_holm"] is None and e["ci_low"] is None
                           and e["undefined"] == "n=1" and not e["resolved"] for e in entries)
    md = (tmp_path / "out" / "report.md").read_text()
    rows = _md_table(md, "Paired differences: synthetic (SYSU-MM01 layout), re-ranking off")
    assert all(r[6] == r[7] == r[8] == r[9] == r[10] == "n/a (n=1)" and r[11] == "untested (n=1)" for r in rows[1:])
    assert "R1 +5.00, n/a (n=1)" in md and "n = 1 seed." in md
    assert "Minimum detectable difference at n" not in md  # no sd at n = 1


def test_committed_readme_has_one_results_region():
    check_readme(REPO / "README.md")
