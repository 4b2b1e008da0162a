"""Every catalogued bad input fails with exit code 2, names the culprit, and writes nothing."""
from __future__ import annotations

import pytest

from bad_inputs import CASES, run_case


def _check(case, tmp_path, subprocess_run=False):
    proc, message = run_case(case, tmp_path, subprocess_run)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error:" in message, proc.stderr
    assert "Traceback" not in proc.stderr
    assert case.expect in message, message
    if case.written:
        assert not (tmp_path / case.written).exists(), f"{case.written} was written"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_fails_cleanly(case, tmp_path):
    _check(case, tmp_path)


# One case per kind of culprit, as a real process: the exit status and stderr of `vireid` itself.
IN_SUBPROCESS = ("unknown parameter key", "SYSU camera folder missing", "corrupt checkpoint on --resume")


@pytest.mark.slow
@pytest.mark.parametrize("name", IN_SUBPROCESS)
def test_bad_input_fails_cleanly_in_a_subprocess(name, tmp_path):
    (case,) = [c for c in CASES if c.name == name]
    _check(case, tmp_path, subprocess_run=True)
