"""Report inputs: clear errors for empty or malformed run metrics, bad studies and CSVs; the
committed published-results CSV; the `vireid report` command."""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest

_FIXTURES = Path(__file__).parent / "fixtures" / "report" / "make_runs.py"
if "report_make_runs" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("report_make_runs", _FIXTURES)
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules["report_make_runs"] = _mod
    _spec.loader.exec_module(_mod)
fx = sys.modules["report_make_runs"]

from vireid.harness.report import ReportError, build_report  # noqa: E402
from vireid.harness.report.collect import load_published, load_runs  # noqa: E402
from vireid.harness.report.render import DEFAULT_PUBLISHED  # noqa: E402


def _one_run(tmp_path: Path) -> Path:
    fx.make_runs(tmp_path / "runs", datasets=["synth-sysu"], variants=fx.VARIANTS[1:2], seeds=[0])
    return next((tmp_path / "runs").rglob("metrics.json"))


def test_no_metrics_names_directory(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ReportError, match=r"no metrics\.json files found under .*empty"):
        build_report(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(ReportError, match="runs directory not found: .*missing"):
        build_report(tmp_path / "missing", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written on an input error


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d["results"][1].pop("mAP"), "results[1].mAP"),
    (lambda d: d["results"][0]["rerank"].pop("enabled"), "results[0].rerank.enabled"),
    (lambda d: d["results"][2].pop("cmc"), "results[2].cmc"),
    (lambda d: d["run"].pop("variant"), "run.variant"),
    (lambda d: d["run"].pop("seed"), "run.seed"),
    (lambda d: d.pop("results"), "results"),
])
def test_malformed_metrics_names_file_and_key(tmp_path, mutate, key):
    path = _one_run(tmp_path)
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ReportError) as info:
        load_runs(tmp_path / "runs")
    message = str(info.value)
    assert str(path) in message and f"missing key '{key}'" in message


def test_malformed_values_and_json(tmp_path):
    path = _one_run(tmp_path)
    data = json.loads(path.read_text())
    data["results"][0]["r10"] = "high"
    path.write_text(json.dumps(data))
    with pytest.raises(ReportError, match=r"results\[0\]\.r10' should be a finite number"):
        load_runs(tmp_path / "runs")
    path.write_text("{not json")
    with pytest.raises(ReportError, match=f"{path}: not valid JSON"):
        load_runs(tmp_path / "runs")


def test_duplicate_seed_is_an_error(tmp_path):
    path = _one_run(tmp_path)
    copy = path.parent.parent / "seed0-again" / "metrics.json"
    copy.parent.mkdir()
    copy.write_text(path.read_text())
    with pytest.raises(ReportError, match="duplicate result .* seed 0"):
        load_runs(tmp_path / "runs")


def test_bad_study_and_storage(tmp_path):
    _one_run(tmp_path)
    runs = tmp_path / "runs"
    with pytest.raises(ReportError, match="database not found"):
        build_report(runs, tmp_path / "out", storage=f"sqlite:///{tmp_path / 'nope.db'}")
    with pytest.raises(ReportError, match="journal file not found"):
        build_report(runs, tmp_path / "out", storage=str(tmp_path / "nope.log"))
    with pytest.raises(ReportError, match="--study needs --storage"):
        build_report(runs, tmp_path / "out", study="x")
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    fx.make_study(storage, name="real", n_trials=1)
    with pytest.raises(ReportError, match="study 'other' not found .*real"):
        build_report(runs, tmp_path / "out", storage=storage, study="other")
    with pytest.raises(ReportError, match="best-params file not found"):
        build_report(runs, tmp_path / "out", best_params=tmp_path / "none.yaml")


def test_published_csv_committed_rows_have_sources():
    frame = load_published(DEFAULT_PUBLISHED)
    assert frame is not None and len(frame) > 0
    for _, row in frame.iterrows():
        assert row["source"].strip() and row["method"].strip() and row["dataset"].strip()
        assert any(row[m].strip() for m in ("r1", "r10", "r20", "mAP", "mINP"))


def test_published_csv_validation(tmp_path):
    bad = tmp_path / "pub.csv"
    bad.write_text("method,venue,year,dataset,protocol,r1,r10,r20,mAP\nX,V,2020,D,P,1,,,2\n")
    with pytest.raises(ReportError, match="missing column.*mINP"):
        load_published(bad)
    bad.write_text("method,venue,year,dataset,protocol,r1,r10,r20,mAP,mINP,source\nX,V,2020,D,P,abc,,,2,,s\n")
    with pytest.raises(ReportError, match="row 2, column r1"):
        load_published(bad)
    bad.write_text("method,venue,year,dataset,protocol,r1,r10,r20,mAP,mINP,source\nX,V,2020,D,P,1,,,2,,\n")
    with pytest.raises(ReportError, match="source column is empty"):
        load_published(bad)


def _parser():
    from vireid.harness.commands import report

    parser = argparse.ArgumentParser(prog="vireid")
    report.register(parser.add_subparsers(dest="command"))
    return parser


def test_report_command(tmp_path, capsys):
    _one_run(tmp_path)
    args = _parser().parse_args(["report", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
                                 "--no-published"])
    assert args.handler(args) == 0
    assert "report.md" in capsys.readouterr().out
    assert (tmp_path / "out" / "report.html").is_file()
    args = _parser().parse_args(["report", "--runs", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")])
    with pytest.raises(ValueError, match="runs directory not found"):  # the CLI prints it, exit code 2
        args.handler(args)


def test_rerank_variants_are_separate_settings(tmp_path):
    # one seed per variant of re-ranking: the idkl-sysu results are their own tables and rows,
    # never averaged with the standard ones (fixture results carry no variant: standard)
    from vireid.harness.report.tables import our_runs_table, results_tables

    fx.make_runs(tmp_path / "runs", datasets=["synth-sysu"], variants=fx.VARIANTS[1:2], seeds=[0, 1])
    path = tmp_path / "runs" / "synth-sysu" / "baseline" / "seed1" / "metrics.json"
    data = json.loads(path.read_text())
    for res in data["results"]:
        if res["rerank"]["enabled"]:
            res["rerank"]["variant"] = "idkl-sysu"
            res["r1"] += 7.0
    path.write_text(json.dumps(data))
    runs = load_runs(tmp_path / "runs")
    settings = {res["rerank"] for run in runs for res in run.results}
    assert sorted(s.label for s in settings) == ["off", "on (idkl-sysu, k1=20, k2=6, lambda=0.3)",
                                                 "on (k1=20, k2=6, lambda=0.3)"]
    tables = {t.key: t for t in results_tables(runs)}
    protocols = "_sysu-all-single_sysu-indoor-single"
    assert set(tables) == {"main_synth-sysu_rr-off_sqeuclidean-l2norm",
                           "rerank_synth-sysu_rr-on-k1-20-k2-6-lam-0.3_sqeuclidean-l2norm" + protocols,
                           "rerank_synth-sysu_rr-on-idkl-sysu-k1-20-k2-6-lam-0.3_sqeuclidean-l2norm" + protocols}
    sysu_on = tables["rerank_synth-sysu_rr-on-idkl-sysu-k1-20-k2-6-lam-0.3_sqeuclidean-l2norm" + protocols]
    assert sysu_on.title.endswith("re-ranking on (idkl-sysu, k1=20, k2=6, lambda=0.3)")
    assert {row["n"] for row in sysu_on.csv_rows} == {1} and {row["seeds"] for row in sysu_on.csv_rows} == {"1"}
    assert {row["rerank_variant"] for row in sysu_on.csv_rows} == {"idkl-sysu"}
    r1 = [row for row in sysu_on.csv_rows if row["metric"] == "R1" and row["protocol"] == "sysu/all/single"]
    seed1 = next(r for r in data["results"] if r["rerank"]["enabled"] and r["protocol"] == "sysu/all/single")
    assert r1[0]["mean"] == pytest.approx(seed1["r1"])
    standard_on = tables["rerank_synth-sysu_rr-on-k1-20-k2-6-lam-0.3_sqeuclidean-l2norm" + protocols]
    assert {row["seeds"] for row in standard_on.csv_rows} == {"0"}
    assert {row["rerank_variant"] for row in standard_on.csv_rows} == {"standard"}
    ours = our_runs_table(runs)
    assert {row[4].text for row in ours.rows} == {s.label for s in settings}


def test_bad_rerank_variant_names_file_and_key(tmp_path):
    path = _one_run(tmp_path)
    data = json.loads(path.read_text())
    data["results"][1]["rerank"]["variant"] = "IDKL SYSU"
    path.write_text(json.dumps(data))
    with pytest.raises(ReportError, match=r"results\[1\]\.rerank\.variant' should be a re-ranking variant name"):
        load_runs(tmp_path / "runs")


def test_multi_shot_goes_to_a_secondary_table(tmp_path):
    """Single-shot protocols form the main table; multi-shot (the same metrics under the other
    real SYSU protocol ids) a secondary one, with the papers' group titles."""
    from vireid.harness.report.tables import results_tables

    fx.make_runs(tmp_path / "runs", datasets=["synth-sysu"], variants=fx.VARIANTS[1:2], seeds=[0])
    path = tmp_path / "runs" / "synth-sysu" / "baseline" / "seed0" / "metrics.json"
    data = json.loads(path.read_text())
    multi = [dict(res, protocol=res["protocol"].replace("single", "multi")) for res in data["results"]]
    data["results"] += multi
    path.write_text(json.dumps(data))
    tables = [t for t in results_tables(load_runs(tmp_path / "runs")) if not t.meta["rerank"]]
    assert [t.meta["kind"] for t in tables] == ["main", "other"]
    main, other = tables
    assert [g for g, _ in main.groups] == ["", "All-search", "Indoor-search"]
    assert [g for g, _ in other.groups] == ["", "All-search (multi-shot)", "Indoor-search (multi-shot)"]
    assert other.title == "synthetic (SYSU-MM01 layout): other protocols, re-ranking off"
    assert "All-search (multi-shot) = sysu/all/multi (i2v)" in other.notes[-1]


def test_report_paths_default_to_the_params_report_block(tmp_path):
    """`report:` in params.yaml is what `vireid report` reads when --runs / --out are not given."""
    from vireid.harness import cli

    fx.make_runs(tmp_path / "runs", datasets=["synth-sysu"], seeds=[0, 1])
    out = tmp_path / "built"
    code = cli.main(["report", "--no-published", "--set", f"report.runs_dir={tmp_path / 'runs'}",
                     "--set", f"report.out_dir={out}"])
    assert code == 0 and (out / "report.md").is_file()
