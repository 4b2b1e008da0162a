"""The report generator end to end: fixture runs (2 datasets x 4 ablation variants + AGW x 2 seeds,
re-ranking off and on) and a tiny Optuna study in a sqlite file -> report.md / report.html /
tables / figures. Every expected number is recomputed here from the fixture metrics.json files.
"""
from __future__ import annotations

import base64
import csv
import importlib.util
import json
import re
import statistics
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

from vireid.harness.report import build_report  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METRICS = [("R1", "r1"), ("R10", "r10"), ("R20", "r20"), ("mAP", "mAP"), ("mINP", "mINP")]
ABLATION_LABELS = [label for _, label, order, _ in sorted((v for v in fx.VARIANTS if v[2] is not None),
                                                          key=lambda v: v[2])]
ROW_LABELS = ABLATION_LABELS + ["AGW"]  # ablation rows in order, then the comparison method
GROUP_TITLES = {"sysu/all/single": "All-search", "sysu/indoor/single": "Indoor-search",
                "regdb/v2i": "Visible→Thermal", "regdb/i2v": "Thermal→Visible"}
RR_LABEL = "on (k1=20, k2=6, lambda=0.3)"


def _results_title(dataset_label: str, rr: bool) -> str:
    if rr:
        return f"{dataset_label}: re-ranking {RR_LABEL}"
    shots = " (single-shot)" if "SYSU" in dataset_label else ""
    return f"{dataset_label}: main protocols{shots}, re-ranking off"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    runs = root / "runs"
    fx.make_runs(runs)
    storage = f"sqlite:///{root / 'optuna.db'}"
    fx.make_study(storage, n_trials=12)  # enough completed trials for the importances
    best = root / "best_params.yaml"
    best.write_text("loss.bg_kl.weight: 1.5\nloss.sm_kl.weight: 0.5\n")
    written_a = build_report(runs, root / "out_a", storage=storage, study="tune-test", best_params=best)
    written_b = build_report(runs, root / "out_b", storage=storage, study="tune-test", best_params=best)
    return {"root": root, "runs": runs, "storage": storage, "a": written_a, "b": written_b,
            "out": root / "out_a", "md": (root / "out_a" / "report.md").read_text(),
            "html": (root / "out_a" / "report.html").read_text()}


def _expected(runs_dir: Path) -> dict:
    """(dataset, rerank_on, protocol, direction, variant_label, metric) -> list of per-seed values."""
    out: dict = {}
    for path in sorted(runs_dir.rglob("metrics.json")):
        data = json.loads(path.read_text())
        run = data["run"]
        for res in data["results"]:
            key = (run["dataset"], res["rerank"]["enabled"], res["protocol"], res["direction"], run["variant_label"])
            for label, name in METRICS:
                out.setdefault(key + (label,), []).append(res[name])
    return out


def _md_table(md: str, title: str) -> list[list[str]]:
    """Rows (header first, separator dropped) of the Markdown table under `**Table: title**`."""
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


def test_outputs_exist(built):
    out = built["out"]
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    figures = sorted((out / "figures").glob("*.png"))
    # 2 datasets x 2 protocol columns x re-ranking off/on CMC plots + the optuna plots; gallery trials
    # per dataset and protocol (re-ranking off).
    assert len([f for f in figures if f.name.startswith("cmc_")]) == 8
    assert len([f for f in figures if f.name.startswith("trials_")]) == 4
    assert {f.name for f in figures} >= {"tuning_history.png", "tuning_importances.png", "tuning_intermediate.png",
                                         "tuning_slice.png", "tuning_parallel.png"}
    for f in figures:
        assert f.read_bytes().startswith(PNG_MAGIC)
    for kind in ("main", "rerank"):
        assert len(list((out / "tables").glob(f"{kind}_*.tex"))) == 2
        assert len(list((out / "tables").glob(f"{kind}_*.csv"))) == 2
    for name in ("comparison_ours", "comparison_published", "runs", "tuning_trials", "tuning_best_trial"):
        assert (out / "tables" / f"{name}.tex").is_file() and (out / "tables" / f"{name}.csv").is_file()
    assert set(built["a"]["figures"]) == set(figures)
    assert not list(out.rglob(".*.tmp")), "temporary files left behind"


def test_ablation_rows_ordered_and_values(built):
    expected = _expected(built["runs"])
    md = built["md"]
    for dataset, (dataset_label, protocols) in fx.DATASETS.items():
        for rr in (False, True):
            rows = _md_table(md, _results_title(dataset_label, rr))
            header, body = rows[0], rows[1:]
            assert [r[0] for r in body] == ROW_LABELS  # ordered by ablation_order, then AGW
            for g, (protocol, direction) in enumerate(protocols):  # the papers' column order
                for m, (label, _) in enumerate(METRICS):
                    col = 1 + g * len(METRICS) + m
                    assert header[col] == f"{GROUP_TITLES[protocol]} · {label}"
                    means = []
                    for row in body:
                        values = expected[(dataset, rr, protocol, direction, row[0], label)]
                        mean, std = statistics.mean(values), statistics.stdev(values)
                        means.append(round(mean, 2))
                        assert row[col].rstrip("†‡").strip("*") == f"{mean:.2f} ± {std:.2f}"
                    for row, mean in zip(body, means):
                        assert row[col].startswith("**") == (mean == max(means)), (dataset, rr, protocol, label)


def test_ablation_csv_matches(built):
    expected = _expected(built["runs"])
    path = (built["out"] / "tables"
            / "rerank_synth-sysu_rr-on-k1-20-k2-6-lam-0.3_sqeuclidean-l2norm_sysu-all-single_sysu-indoor-single.csv")
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == len(ROW_LABELS) * 2 * len(METRICS)
    for row in rows:
        values = expected[("synth-sysu", True, row["protocol"], row["direction"], row["variant_label"], row["metric"])]
        assert float(row["mean"]) == pytest.approx(statistics.mean(values), abs=1e-5)
        assert float(row["std"]) == pytest.approx(statistics.stdev(values), abs=1e-5)
        assert row["n"] == "2" and row["rerank"] == "on" and row["rerank_k1"] == "20"


def test_rerank_stamped_and_separate(built):
    md = built["md"]
    main = md.index("### Main results")
    rerank = md.index("### Re-ranking")
    assert main < rerank
    for dataset, (dataset_label, _) in fx.DATASETS.items():
        t_off = md.index(f"**Table: {_results_title(dataset_label, False)}**")
        t_on = md.index(f"**Table: {_results_title(dataset_label, True)}**")
        assert main < t_off < rerank < t_on
        # Provenance in the note under the table, not in the caption.
        note_on = md[t_on:md.index("Files:", t_on)].split("\n\n")[-1]
        assert f"Provenance: dataset {dataset_label} [{dataset}]" in note_on
        assert f"re-ranking {RR_LABEL}" in note_on and "distance sqeuclidean_l2norm" in note_on
        assert f"dataset fingerprint fp-{dataset.split('-')[1]}" in note_on
        note_off = md[t_off:md.index("Files:", t_off)]
        assert "re-ranking off" in note_off and "k1=" not in note_off
    for tex in (built["out"] / "tables").glob("*_rr-*.tex"):
        if not tex.name.startswith(("main_", "rerank_")):
            continue
        text = tex.read_text()
        assert "\\toprule" in text and "\\midrule" in text and "\\bottomrule" in text
        assert "\\textbf{" in text and "$\\pm$" in text and "\\cmidrule" in text and "table*" in text
        caption = re.search(r"\\caption\{(.*)\}", text).group(1)
        assert len(caption) < 90 and "fingerprint" not in caption
        assert ("re-ranking on (k1=20, k2=6, lambda=0.3)" if tex.name.startswith("rerank_") else "re-ranking off") \
            in caption
    # The comparison table labels every row with its re-ranking setting and dataset.
    ours = _md_table(md, "Our runs (measured by this harness)")
    assert {r[4] for r in ours[1:]} == {"off", "on (k1=20, k2=6, lambda=0.3)"}
    assert any(r[0] == "AGW" and r[1] == "comparison" and "[synth-regdb]" in r[2] for r in ours[1:])


def test_comparison_sections_separate(built):
    md = built["md"]
    ours, published = md.index("### Our runs"), md.index("### Published results")
    assert ours < published < md.index("## Figures")
    table = _md_table(md, "Published results (quoted from their sources, not reproduced here)")
    assert table[0][-1] == "Source"
    assert len(table) > 1 and all(r[-1] not in ("", "–") for r in table[1:])


def test_html_self_contained(built):
    page = built["html"]
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "<link" not in page and "url(" not in page and "@import" not in page
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == len(list((built["out"] / "figures").glob("*.png")))
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "<b>" in page and "re-ranking on (k1=20, k2=6, lambda=0.3)" in page
    assert len(re.findall(r'<table id="T_[^"]+" class="report', page)) >= 8


def test_tuning_section(built):
    import optuna

    study = optuna.load_study(study_name="tune-test", storage=built["storage"])
    md = built["md"]
    assert f"Trial {study.best_trial.number}: value {study.best_value:.6g}." in md
    trials = _md_table(md, "Trials")
    assert [r[0] for r in trials[1:]] == [str(t.number) for t in study.trials]
    assert all(r[1] == "complete" for r in trials[1:])
    importances = _md_table(md, "Parameter importances (fANOVA, seed 0)")
    assert {r[0] for r in importances[1:]} == {"loss.bg_kl.weight", "loss.sm_kl.weight"}
    best_file = _md_table(md, "Best parameters file")
    assert best_file[1:] == [["loss.bg_kl.weight", "1.5"], ["loss.sm_kl.weight", "0.5"]]


def test_run_table_differing_params(built):
    table = _md_table(built["md"], "Runs")
    header = table[0]
    assert header[:7] == ["Run", "Variant", "Dataset", "Seed", "MLflow run id", "Git commit", "Train time (s)"]
    assert set(header[7:]) == {"data.dataset", "loss.bg_kl.weight", "model.name", "train.seed"}  # not train.lr
    assert len(table) - 1 == len(fx.DATASETS) * len(fx.VARIANTS) * len(fx.SEEDS)


def test_rebuild_is_deterministic(built):
    a, b = built["root"] / "out_a", built["root"] / "out_b"
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_stale_outputs_removed_and_no_study(tmp_path):
    runs = tmp_path / "runs"
    fx.make_runs(runs, datasets=["synth-sysu"], variants=fx.VARIANTS[:3], seeds=[0])
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "mine.png").write_bytes(b"not ours")  # never listed in a manifest: kept
    first = build_report(runs, out, published_csv=None)
    # Drop the indoor protocol from every run: its CMC figures must disappear on rebuild.
    for p in runs.rglob("metrics.json"):
        data = json.loads(p.read_text())
        data["results"] = [r for r in data["results"] if r["protocol"] == "sysu/all/single"]
        p.write_text(json.dumps(data))
    second = build_report(runs, out, published_csv=None)
    assert len(second["figures"]) == len(first["figures"]) // 2
    assert {p.name for p in (out / "figures").glob("*.png")} - {"mine.png"} == {p.name for p in second["figures"]}
    assert (out / "figures" / "mine.png").read_bytes() == b"not ours"
    md = (out / "report.md").read_text()
    assert "No Optuna study was given" in md
    assert "No published results (no file given)." in md
    # One seed: no std shown, n = 1.
    rows = _md_table(md, "synthetic (SYSU-MM01 layout): main protocols (single-shot), re-ranking off")
    assert all("±" not in r[1] for r in rows[1:])
    assert "n = 1 per cell" in md


def test_too_few_trials_for_importances(tmp_path):
    runs = tmp_path / "runs"
    fx.make_runs(runs, datasets=["synth-sysu"], variants=fx.VARIANTS[1:2], seeds=[0])
    journal = tmp_path / "study.log"
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    fx.make_study(JournalStorage(JournalFileBackend(str(journal))), name="few", n_trials=3, n_complete=1)
    build_report(runs, tmp_path / "out", storage=str(journal), published_csv=None)  # the storage's only study
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Too few completed trials to compute parameter importances: need at least 10, the study has 1." in md
    assert "Study `few`" in md and "1 complete, 2 pruned" in md
    assert (tmp_path / "out" / "figures" / "tuning_history.png").is_file()
    assert not (tmp_path / "out" / "figures" / "tuning_importances.png").exists()
