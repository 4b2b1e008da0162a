"""The report's paper-form tables and figures from runs trained by the real code path: the six
study variants x 2 seeds on a tiny synthetic SYSU layout, and 2 variants on 2 RegDB splits of a
tiny synthetic RegDB layout. Checks the figures exist and come from the run files (history.csv,
features.npz, the image cache), RegDB's mean over splits, the LaTeX main table in a two-column
page (where pdflatex is installed) and the page at 1280 px in headless Chromium (slow, where
Chromium is installed).
"""
from __future__ import annotations

import json
import shutil
import statistics
import subprocess
from pathlib import Path

import numpy as np
import pytest

from study_support import tiny_overrides
from vireid.harness.report import build_report

STUDY_VARIANTS = ["baseline", "idkl-decompose", "idkl-decompose-ip", "idkl-no-distalign", "idkl", "agw"]
SEEDS = [0, 1]
REGDB = {"data.dataset": "regdb", "data.name": "synth-regdb", "data.label": "synthetic (RegDB layout)",
         "eval.protocols": "[regdb/v2i,regdb/i2v]"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _train(prepared: Path, experiment: str, run_dir: Path, **extra) -> None:
    from vireid.harness.config import load_params
    from vireid.harness.runner import run_training

    params = load_params(experiment=experiment, dataset="synth-sysu", overrides=tiny_overrides(prepared, **extra))
    run_training(params, run_dir, progress=False)


@pytest.fixture(scope="module")
def study(prepared_tiny, tmp_path_factory):
    """runs/ as the study lays it out (<dataset>/<variant>/seed<k>, RegDB also split<s>), a copy
    holding only the metrics.json files (the evaluate stage's results/metrics) and two reports."""
    from vireid.harness.config import load_params
    from vireid.harness.data import prepare_from_params

    root = tmp_path_factory.mktemp("figures")
    runs = root / "runs"
    for variant in STUDY_VARIANTS:
        for seed in SEEDS:
            _train(prepared_tiny, variant, runs / "synth-sysu" / variant / f"seed{seed}", **{"train.seed": seed})
    for split in (1, 2):
        prepared = root / f"prepared-regdb-{split}"
        extra = dict(REGDB, **{"data.regdb_split": split})
        prepare_from_params(load_params(dataset="synth-sysu", overrides=tiny_overrides(prepared, **extra)).data)
        for variant in ("baseline", "idkl"):
            _train(prepared, variant, runs / "synth-regdb" / f"split{split}" / variant / "seed0", **extra)
    metrics_only = root / "results"
    for path in runs.rglob("metrics.json"):
        target = metrics_only / path.relative_to(runs)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    direct = build_report(runs, root / "direct", published_csv=None)
    return {"root": root, "runs": runs, "results": metrics_only, "direct": direct,
            "md": (root / "direct" / "report.md").read_text()}


def _figures(written: dict) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in written["figures"]}


def _run_file_figures(runs_dir: Path, run_files: Path | None = None) -> tuple[dict[str, bytes], list[str]]:
    """The figures drawn from run files (and the notes standing in for missing ones), as the
    report builds them from `runs_dir` (and `run_files`)."""
    from vireid.harness.report.collect import load_runs
    from vireid.harness.report.figures import distance_figures, retrieval_figures, training_figures

    runs = load_runs(runs_dir, run_files)
    items = training_figures(runs) + retrieval_figures(runs) + distance_figures(runs)
    return ({f"{f.key}.png": f.png for f in items if not isinstance(f, str)},
            [f for f in items if isinstance(f, str)])


RUN_FILE_FIGURES = ["training_loss_synth-sysu.png", "validation_map_synth-sysu.png", "retrieval_synth-sysu.png",
                    "distances_synth-sysu.png", "training_loss_synth-regdb.png", "retrieval_synth-regdb.png",
                    "distances_synth-regdb.png"]


def test_figures_exist_and_come_from_the_run_files(study):
    direct = _figures(study["direct"])
    matched, matched_notes = _run_file_figures(study["results"], study["runs"])
    bare, notes = _run_file_figures(study["results"])
    for name in RUN_FILE_FIGURES:
        assert direct[name].startswith(PNG_MAGIC), name
        assert matched[name] == direct[name], name  # results/metrics matched to runs/ by path
        assert name not in bare, name  # without the run files there is nothing to draw them from
    assert set(matched) == {n for n in RUN_FILE_FIGURES} | {"validation_map_synth-regdb.png"} and not matched_notes
    assert any("no run folder with a history.csv was found (give the training runs' folder with `--run-files`)"
               in n for n in notes)
    assert any("no ablation run folder with features.npz was found" in n for n in notes)
    # From metrics.json alone: CMC panels per protocol and the gallery-trial spread (10 trials).
    assert len([n for n in direct if n.startswith("cmc_")]) == 4  # 2 SYSU + 2 RegDB protocols
    assert "trials_synth-sysu_sysu-all-single_i2v_squared-euclidean-l2normalized.png" in direct
    # The tiny runs hold out validation identities: the validation curve is drawn for SYSU.
    assert "Validation mAP per epoch" in study["md"]


def test_training_figure_follows_history(study, tmp_path):
    """A change in one run's history.csv changes the training figure and nothing from metrics.json."""
    runs = tmp_path / "runs"
    shutil.copytree(study["runs"] / "synth-sysu", runs / "synth-sysu")
    history = runs / "synth-sysu" / "baseline" / "seed0" / "history.csv"
    text = history.read_text().splitlines()
    head = text[0].split(",")
    row = text[1].split(",")
    row[head.index("loss")] = str(float(row[head.index("loss")]) * 3)
    history.write_text("\n".join([text[0], ",".join(row)] + text[2:]) + "\n")
    written, _ = _run_file_figures(runs)
    direct = _figures(study["direct"])
    assert written["training_loss_synth-sysu.png"] != direct["training_loss_synth-sysu.png"]
    assert written["distances_synth-sysu.png"] == direct["distances_synth-sysu.png"]


def test_distances_are_the_protocol_distances(study):
    """The histogram's distances: squared Euclidean on L2-normalised features (SYSU's rule), and
    same-identity camera-2 gallery images hidden from camera-3 queries (same location)."""
    from scipy.spatial.distance import cdist

    from vireid.harness.report.collect import load_runs
    from vireid.harness.report.figures import _distances

    run = next(r for r in load_runs(study["runs"]) if r.rel == "synth-sysu/idkl/seed0")
    arrays, dist, same_place = _distances(run)
    with np.load(run.run_dir / "features.npz") as npz:
        q, g = npz["query_feats"].astype(np.float64), npz["gallery_feats"].astype(np.float64)
        qc, gc = npz["query_cams"], npz["gallery_cams"]
        qi, gi = npz["query_ids"], npz["gallery_ids"]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    np.testing.assert_allclose(dist, cdist(q, g, "sqeuclidean"), atol=1e-9)
    expected = (qc[:, None] == 3) & (gc[None, :] == 2) & (qi[:, None] == gi[None, :])
    assert same_place.any() and np.array_equal(same_place, expected)


def test_retrieval_needs_the_image_cache(study):
    from vireid.harness.report.collect import load_runs
    from vireid.harness.report.figures import _image_source, retrieval_figures

    runs = [r for r in load_runs(study["runs"]) if r.dataset == "synth-sysu"]
    for run in runs:
        run.run_dir = run.path.parent
    images, rows = _image_source(runs[0])
    assert images.dtype == np.uint8 and images.ndim == 4 and len(rows) == len(images)
    for run in runs:
        run.params["data.prepared_dir"] = str(study["root"] / "nowhere")
    (note,) = retrieval_figures(runs)
    assert isinstance(note, str) and "not drawn" in note and "nowhere" in note


def test_main_table_is_the_papers_form(study):
    md = study["md"]
    title = "**Table: synthetic (SYSU-MM01 layout): main protocols (single-shot), re-ranking off**"
    part = md[md.index(title):]
    body = part.split("\n\n")[1]  # the table: title, blank line, table
    lines = body.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[0] == "Variant" and len(header) == 11
    assert header[1:6] == [f"All-search · {m}" for m in ("R1", "R10", "R20", "mAP", "mINP")]
    assert header[6] == "Indoor-search · R1"
    labels = [c.split("|")[1].strip() for c in lines[2:]]
    assert labels == ["Baseline (ID + triplet)", "+ specific branch & purification", "+ IP", "+ bg_kl & sm_kl",
                      "+ distalign (IDKL)", "AGW"]
    note = part[:part.index("Files:")]
    assert "Provenance: dataset synthetic (SYSU-MM01 layout) [synth-sysu]; protocols All-search = " \
           "sysu/all/single (i2v), Indoor-search = sysu/indoor/single (i2v)" in note


def test_regdb_mean_over_splits(study):
    """RegDB cells: each split's value (one seed here), then mean ± sd over the splits."""
    import csv

    per_split: dict = {}
    for path in sorted((study["runs"] / "synth-regdb").rglob("metrics.json")):
        data = json.loads(path.read_text())
        assert data["run"]["params"]["data.regdb_split"] in (1, 2)
        for res in data["results"]:
            per_split.setdefault((data["run"]["variant"], res["protocol"]), []).append(res["r1"])
    table = next(p for p in study["direct"]["tables_csv"] if p.name.startswith("main_synth-regdb"))
    rows = [r for r in csv.DictReader(table.open()) if r["metric"] == "R1"]
    assert len(rows) == 4
    for row in rows:
        values = per_split[(row["variant"], row["protocol"])]
        assert len(values) == 2 and row["n"] == "2" and row["seeds"] == "split1 split2"
        assert float(row["mean"]) == pytest.approx(statistics.fmean(values), abs=1e-5)
        assert float(row["std"]) == pytest.approx(statistics.stdev(values), abs=1e-5)
    md = study["md"]
    part = md[md.index("**Table: synthetic (RegDB layout): main protocols, re-ranking off**"):]
    note = part[:part.index("Files:")]
    assert "Mean ± sd over the 2 RegDB splits (each split: the mean over its seeds)" in note
    assert "2 dataset fingerprints (one per RegDB split: 1, 2)" in note
    assert "Visible→Thermal · R1" in part.splitlines()[2]


def _pdflatex_reason() -> str | None:
    if shutil.which("pdflatex") is None:
        return "pdflatex not installed (apt-get install texlive-latex-base texlive-latex-recommended)"
    return None


def _all_marked(runs_dir: Path) -> list:
    """The main tables with both marks on every cell: the widest a main table gets."""
    from vireid.harness.report.collect import TABLE_METRICS, load_runs
    from vireid.harness.report.comparisons import MarkIndex
    from vireid.harness.report.tables import Setting, results_tables

    runs = load_runs(runs_dir)
    marks = MarkIndex()
    for run in runs:
        for res in run.results:
            for metric in TABLE_METRICS:
                marks.marks[(Setting(run.dataset, res["rerank"], res["distance"]), res["protocol"],
                             res["direction"], run.variant, metric)] = "†‡"
    return [t for t in results_tables(runs, marks) if t.meta["kind"] == "main"]


@pytest.mark.skipif(_pdflatex_reason() is not None, reason=str(_pdflatex_reason()))
def test_main_table_fits_a_two_column_page(study, tmp_path):
    """Every main table (six variants on SYSU; RegDB), as written and with marks on every cell,
    compiles in a two-column article's table* without an overfull box."""
    from vireid.harness.report.tables import to_latex

    tables = [p for p in study["direct"]["tables_tex"] if p.name.startswith("main_")]
    assert len(tables) == 2
    names = []
    for tex in tables:
        shutil.copy(tex, tmp_path / tex.name)
        names.append(tex.name)
    for i, table in enumerate(_all_marked(study["runs"])):
        text = to_latex(table)
        assert r"\rlap{$^{\dagger\ddagger}$}" in text
        (tmp_path / f"marked{i}.tex").write_text(text)
        names.append(f"marked{i}.tex")
    assert len(names) == 4
    body = "\n".join(rf"\input{{{name}}}" for name in names)
    (tmp_path / "paper.tex").write_text(
        "\\documentclass[twocolumn]{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + body
        + "\n\\end{document}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    log = (tmp_path / "paper.log").read_text(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    assert "Overfull \\hbox" not in log, log[log.index("Overfull"):][:1500]
    assert (tmp_path / "paper.pdf").is_file()


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


PROBE = """<script>window.addEventListener("load", function () {
  var out = {page: document.documentElement.scrollWidth, view: window.innerWidth, tables: {}};
  document.querySelectorAll("div.table-wrap").forEach(function (w) {
    out.tables[w.id] = [w.querySelector("table").getBoundingClientRect().width, w.clientWidth];
  });
  var p = document.createElement("pre"); p.id = "vireid-probe"; p.textContent = JSON.stringify(out);
  document.body.appendChild(p);
});</script>"""


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="Chromium not installed (apt-get install chromium)")
def test_page_has_no_horizontal_scroll_at_1280px(study, tmp_path):
    """Headless Chromium at 1280 px: the page does not scroll sideways and every main table fits
    its column without the table's own scroll bar (wide tables such as Runs may scroll inside)."""
    import re

    page = (study["root"] / "direct" / "report.html").read_text()
    probe = tmp_path / "report.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    proc = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                           "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                          capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="vireid-probe">([^<]*)</pre>', proc.stdout)
    assert found, proc.stderr[-2000:]
    sizes = json.loads(found.group(1).replace("&quot;", '"'))
    assert sizes["view"] == 1280
    assert sizes["page"] <= sizes["view"], sizes
    main = {k: v for k, v in sizes["tables"].items() if k.startswith("wrap-main_")}
    assert len(main) == 2
    for key, (table_width, column_width) in main.items():
        assert table_width <= column_width, (key, table_width, column_width)
