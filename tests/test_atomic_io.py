"""Interrupted or failing writes never damage what was written before (full disk included)."""
from __future__ import annotations

import errno

import pytest

from vireid.harness import cli
from vireid.harness.io import atomic_save, atomic_write_json


def test_full_disk_leaves_the_previous_file_and_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"mAP": 1.0})

    def fail(tmp):
        tmp.write_bytes(b'{"mAP": 2')  # half written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    with pytest.raises(OSError, match="No space left"):
        atomic_save(target, fail)
    assert target.read_text().strip().endswith("}") and '"mAP": 1.0' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_cli_reports_a_full_disk_as_a_clear_error(monkeypatch, capsys, tmp_path):
    def full_disk(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    import vireid.harness.report.render as render

    monkeypatch.setattr(render, "build_report", lambda *a, **k: full_disk(tmp_path / "report.md"))
    code = cli.main(["report", "--runs", str(tmp_path), "--out", str(tmp_path / "out"), "--no-published"])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "report.md" in err
