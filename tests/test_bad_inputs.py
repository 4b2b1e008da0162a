"""Every catalogued bad input fails with exit code 2, names the culprit, and writes nothing."""
from __future__ import annotations

import pytest

from bad_inputs import CASES, run_case


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_fails_cleanly(case, tmp_path):
    proc, message = run_case(case, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error:" in message, proc.stderr
    assert "Traceback" not in proc.stderr
    assert case.expect in message, message
    if case.written:
        assert not (tmp_path / case.written).exists(), f"{case.written} was written"
