"""The README's results region is the study's report, as `make readme` writes it
(`vireid report --from-report reports/study --readme README.md`), never typed by hand."""
from __future__ import annotations

from pathlib import Path

import pytest

from vireid.harness import cli
from vireid.harness.report.render import SUMMARY_FILE
from vireid.harness.report.summary import readme_region

REPO = Path(__file__).resolve().parent.parent
STUDY_REPORT = REPO / "reports" / "study"


@pytest.mark.skipif(not (STUDY_REPORT / SUMMARY_FILE).is_file(),
                    reason=f"no built study report ({STUDY_REPORT / SUMMARY_FILE} is written by `make study`)")
def test_readme_results_region_is_what_the_report_command_writes(tmp_path):
    copy = tmp_path / "README.md"
    copy.write_text((REPO / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    assert cli.main(["report", "--from-report", str(STUDY_REPORT), "--readme", str(copy)]) == 0
    assert readme_region(REPO / "README.md") == readme_region(copy), \
        "README.md's results region differs from reports/study/summary.md: run `make readme`"
    assert copy.read_text(encoding="utf-8") == (REPO / "README.md").read_text(encoding="utf-8")
