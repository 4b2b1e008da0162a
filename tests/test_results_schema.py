"""The results format: what evaluation writes reads back unchanged, and a malformed result is
refused naming the file and the key."""
from __future__ import annotations

import json

import pytest

from eval_support import cross_modal_arrays
from vireid.harness.evaluation.evaluate import evaluate_protocol_arrays
from vireid.harness.evaluation.results import MetricsFile, ProtocolResult, Rerank, ResultsError, RunInfo


@pytest.fixture(scope="module")
def result() -> dict:
    return evaluate_protocol_arrays(cross_modal_arrays(), "regdb/v2i", rerank=True, k1=3, k2=2, lam=0.5)


def test_evaluation_output_reads_back_unchanged(result):
    parsed = ProtocolResult.from_dict(result)
    assert parsed.rerank == Rerank(True, 3, 2, 0.5, "standard")
    assert parsed.to_dict() == result and list(parsed.to_dict()) == list(result)
    run = RunInfo("idkl", "synth-regdb", 0, params={"train.lr": 0.1})
    text = json.dumps(MetricsFile(run, [parsed]).to_dict())
    again = MetricsFile.from_dict(json.loads(text))
    assert again.run == run and again.results == [parsed]


@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(mAP=153.2), r"key 'results\[0\]\.mAP' should be a percentage in 0..100, got 153.2"),
    (lambda r: r.pop("r10"), r"missing key 'results\[0\]\.r10'"),
    (lambda r: r["rerank"].update(enabled="yes"), r"'results\[0\]\.rerank\.enabled' should be true or false"),
    (lambda r: r["cmc"].__setitem__(2, float("nan")), r"'results\[0\]\.cmc\[2\]' should be a finite number"),
    (lambda r: r["per_trial"][0].update(trial="first"), r"'results\[0\]\.per_trial\[0\]\.trial' should be an int"),
    (lambda r: r.update(protocol="regdb/sideways"), r"unknown protocol 'regdb/sideways'; known: sysu/all/single"),
])
def test_malformed_results_are_refused_naming_file_and_key(result, tmp_path, change, message):
    from vireid.harness.evaluation.protocols import protocol_names

    bad = json.loads(json.dumps(result))
    change(bad)
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"run": RunInfo("idkl", "d", 0).to_dict(), "results": [bad]}))
    with pytest.raises(ResultsError, match=f"^{path}: .*" + message):
        MetricsFile.read(path, known_protocols=protocol_names())


def test_results_written_before_rerank_variants_read_as_standard(result):
    old = json.loads(json.dumps(result))
    del old["rerank"]["variant"]
    assert ProtocolResult.from_dict(old).rerank.variant == "standard"


def test_a_stub_is_refused_only_when_results_are_required():
    stub = {"run": RunInfo("idkl", "d", 0).to_dict(), "results": []}
    assert MetricsFile.from_dict(stub).results == []
    with pytest.raises(ResultsError, match="holds no test results"):
        MetricsFile.from_dict(stub, "m.json", require_results=True)
