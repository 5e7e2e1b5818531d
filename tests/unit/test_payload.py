"""The payload: Diagnostic/Report -> JSON that the shipped JSON Schema accepts, and a schema
that rejects what the editor could not use. Text and HTML views of the same data."""

from __future__ import annotations

import json
import math
import pathlib
import warnings

import jsonschema
import pytest

from gradwatch.diagnostics import Applicability, Diagnostic, Edit, Fix, Location, Related, Severity
from gradwatch.report import MIME_TYPE, GradwatchWarning, Report

SCHEMA = json.loads((pathlib.Path(__file__).resolve().parents[2] / "kernel_ext" / "gradwatch" / "schema"
                     / "diagnostics.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _loc(**kw) -> Location:
    base = dict(line=9, column=5, end_line=9, end_column=22, source="w = torch.randn(1, 1)", cell=2)
    base.update(kw)
    return Location(**base)


def _diag(**kw) -> Diagnostic:
    base = dict(code="GW001", name="requires-grad-missing", severity=Severity.ERROR,
                message="`w` is created without `requires_grad=True`", location=_loc(),
                related=[Related(_loc(line=31, column=5, end_line=31, end_column=20,
                                      source="    loss.backward()"), "backward here")],
                fix=Fix("Add `requires_grad=True`", Applicability.SAFE,
                        (Edit(_loc().at(21), ", requires_grad=True"),)),
                evidence={"tensor": "w", "shape": (1, 1)})
    base.update(kw)
    return Diagnostic(**base)


def _payload(*diags, count=2):
    return Report(execution_count=count, diagnostics=list(diags)).to_payload()


def test_full_payload_validates_and_has_the_documented_shape():
    payload = _payload(_diag())
    VALIDATOR.validate(payload)
    assert payload["version"] == 1 and payload["tool"]["name"] == "gradwatch"
    assert payload["cell"] == {"execution_count": 2}
    [d] = payload["diagnostics"]
    assert d["location"] == {"cell": 2, "path": None, "line": 9, "column": 5, "end_line": 9,
                             "end_column": 22, "source": "w = torch.randn(1, 1)"}
    assert d["fix"]["edits"] == [{"location": {"cell": 2, "path": None, "line": 9, "column": 21, "end_line": 9,
                                               "end_column": 21, "source": "w = torch.randn(1, 1)"},
                                  "new_text": ", requires_grad=True"}]
    assert d["url"] == "https://github.com/gradwatch/gradwatch/blob/main/docs/rules/GW001.md"
    assert d["evidence"] == {"tensor": "w", "shape": [1, 1]}
    json.dumps(payload, allow_nan=False)


def test_minimal_and_empty_payloads_validate():
    VALIDATOR.validate(_payload())
    VALIDATOR.validate(_payload(count=None))
    VALIDATOR.validate(_payload(_diag(location=None, related=[], fix=None, evidence={})))
    VALIDATOR.validate(_payload(_diag(location=_loc(cell=None, path="/tmp/train.py"))))
    VALIDATOR.validate(_payload(_diag(severity=Severity.INFO, fix=Fix("Do X", Applicability.DISPLAY_ONLY))))


def test_evidence_is_made_json():
    d = _diag(evidence={"nan": math.nan, "inf": -math.inf, "set": {3}, "obj": object, 1: (1, 2)})
    ev = d.to_json()["evidence"]
    assert ev["nan"] == "nan" and ev["inf"] == "-inf" and ev["set"] == [3] and ev["1"] == [1, 2]
    assert ev["obj"] == "<class 'object'>"
    payload = _payload(d)
    VALIDATOR.validate(payload)
    json.dumps(payload, allow_nan=False)


@pytest.mark.parametrize("mutate", [
    lambda p: p.update(version=2),
    lambda p: p.update(extra=1),
    lambda p: p["cell"].update(execution_count=-1),
    lambda p: p["diagnostics"][0].update(code="GW1"),
    lambda p: p["diagnostics"][0].update(name="Requires Grad"),
    lambda p: p["diagnostics"][0].update(severity="fatal"),
    lambda p: p["diagnostics"][0]["location"].update(line=0),
    lambda p: p["diagnostics"][0]["location"].pop("source"),
    lambda p: p["diagnostics"][0]["fix"].update(applicability="maybe"),
    lambda p: p["diagnostics"][0].update(url="javascript:alert(1)"),
    lambda p: p["diagnostics"][0].pop("evidence"),
    lambda p: p["tool"].update(name="other"),
], ids=["version", "extra-key", "negative-count", "code", "name", "severity", "line-0", "no-source",
        "applicability", "url-scheme", "no-evidence", "tool-name"])
def test_schema_rejects_malformed_payloads(mutate):
    payload = _payload(_diag())
    mutate(payload)
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(payload)


def test_location_helpers():
    loc = _loc()
    assert loc.text == "torch.randn(1, 1)"
    at = loc.at(21)
    assert (at.column, at.end_column, at.line, at.end_line) == (21, 21, 9, 9)
    multi = _loc(end_line=10, end_column=3)
    assert multi.text == "torch.randn(1, 1)"
    assert _loc(cell=None, path="x.py").describe() == "x.py, line 9"


def test_mime_bundle_views_and_escaping():
    d = _diag(message="<script>alert(1)</script> & `w`")
    bundle = Report(execution_count=4, diagnostics=[d])._repr_mimebundle_()
    assert set(bundle) == {MIME_TYPE, "text/html", "text/plain"}
    assert MIME_TYPE == "application/vnd.gradwatch.diagnostics+json"
    assert "<script>" not in bundle["text/html"] and "&lt;script&gt;" in bundle["text/html"]
    assert "error   GW001 cell [2], line 9: <script>" in bundle["text/plain"]
    assert "fix (safe): Add `requires_grad=True`" in bundle["text/plain"]
    empty = Report(execution_count=5)._repr_mimebundle_()
    assert empty["text/plain"] == "gradwatch: no problems found"
    assert empty[MIME_TYPE]["diagnostics"] == []


def test_note_and_key():
    d = _diag()
    assert d.note() == "gradwatch GW001: `w` is created without `requires_grad=True` (cell [2], line 9)"
    assert d.key() == _diag(evidence={}).key()
    assert d.key() != _diag(location=_loc(line=10)).key()


def test_report_warn_uses_cell_or_path_and_line():
    report = Report(execution_count=2, diagnostics=[_diag(), _diag(location=_loc(cell=None, path="/tmp/t.py", line=4)),
                                                   _diag(location=None)])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        report.warn()
    assert [(w.category, w.filename, w.lineno) for w in record] == [
        (GradwatchWarning, "<cell [2]>", 9), (GradwatchWarning, "/tmp/t.py", 4), (GradwatchWarning, "<gradwatch>", 0)]
    assert str(record[0].message) == "GW001 `w` is created without `requires_grad=True`"
