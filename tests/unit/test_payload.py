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
    assert _loc(cell=None, path="x.py").describe() == "x.py, line 9, col 5"


def test_mime_bundle_views_and_escaping():
    d = _diag(message="<script>alert(1)</script> & `w`")
    bundle = Report(execution_count=4, diagnostics=[d])._repr_mimebundle_()
    assert set(bundle) == {MIME_TYPE, "text/html", "text/plain"}
    assert MIME_TYPE == "application/vnd.gradwatch.diagnostics+json"
    assert "<script>" not in bundle["text/html"] and "&lt;script&gt;" in bundle["text/html"]
    assert "error   GW001 cell [2], line 9, col 5: <script>" in bundle["text/plain"]
    assert "safe fix: Add `requires_grad=True`" in bundle["text/plain"]
    empty = Report(execution_count=5)._repr_mimebundle_()
    assert empty["text/plain"] == "gradwatch: no problems found"
    assert empty[MIME_TYPE]["diagnostics"] == []


HELP = "No gradient can reach it, so `opt` never updates it: create it with `requires_grad=True`."


def test_help_is_written_only_when_set_and_the_schema_takes_it():
    assert "help" not in _diag().to_json() and "help" not in _diag(help="").to_json()  # optional
    payload = _payload(_diag(help=HELP))
    VALIDATOR.validate(payload)
    assert list(payload["diagnostics"][0])[:5] == ["code", "name", "severity", "message", "help"]
    assert payload["diagnostics"][0]["help"] == HELP
    long_help = _payload(_diag(help="why " * 600))["diagnostics"][0]["help"]
    assert len(long_help) == 2000 and long_help.endswith("…")  # clipped like the message


@pytest.mark.parametrize("bad", [42, "", "h" * 2001, None], ids=["not-a-string", "empty", "too-long", "null"])
def test_schema_rejects_a_malformed_help(bad):
    payload = _payload(_diag())
    payload["diagnostics"][0]["help"] = bad
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(payload)


def test_text_report_prints_the_help_line_under_the_message():
    text = Report(execution_count=2, diagnostics=[_diag(help=HELP), _diag(code="GW002", name="graph-cut")]).to_text()
    assert text.splitlines() == [
        "gradwatch: 2 problem(s)",
        "  error   GW001 cell [2], line 9, col 5: `w` is created without `requires_grad=True`",
        "      w = torch.randn(1, 1)",
        f"      help: {HELP}",
        "      safe fix: Add `requires_grad=True`",
        "  error   GW002 cell [2], line 9, col 5: `w` is created without `requires_grad=True`",
        "      w = torch.randn(1, 1)",
        "      safe fix: Add `requires_grad=True`",
    ]


def test_note_is_one_line_with_the_help_only_when_it_fits():
    short = _diag(help="Create it with `requires_grad=True`.")
    assert short.note() == ("gradwatch GW001: `w` is created without `requires_grad=True` (cell [2], line 9, col 5); "
                            "help: Create it with `requires_grad=True`.")
    assert _diag(help=HELP * 2).note() == _diag().note()  # too long for one line: the message alone
    assert "\n" not in _diag(help="a\nb").note()


def test_note_and_key():
    d = _diag()
    assert d.note() == "gradwatch GW001: `w` is created without `requires_grad=True` (cell [2], line 9, col 5)"
    assert d.key() == _diag(help=HELP).key()
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


# --- the schema's limits hold for any input (issue 11, item 7) -------------------------------------
def _limits(node=SCHEMA, where="") -> dict[str, int]:
    """Every maxLength / maxItems in the schema, by a readable path ("location.source")."""
    found: dict[str, int] = {}
    if isinstance(node, dict):
        for key in ("maxLength", "maxItems"):
            if key in node:
                found[where] = node[key]
        for key, value in node.items():
            if key in ("properties", "$defs"):
                for name, sub in value.items():
                    found.update(_limits(sub, f"{where}.{name}".lstrip(".")))
            elif key == "items":
                found.update(_limits(value, where + "[]"))
    return found


LONG_NAME = "very_long_variable_name_" * 125  # 3,000 characters


def _over(limit: int, unit: str = "x") -> str:
    return unit * (limit + 25)


# path in the schema -> a Report whose JSON would exceed that limit without enforcement
EXTREMES = {
    "tool.version": lambda n: Report(execution_count=1, diagnostics=[_diag()]),  # patched below
    "diagnostics": lambda n: Report(execution_count=1, diagnostics=[_diag(message=f"m{i}") for i in range(n + 5)]),
    "location.path": lambda n: Report(1, [_diag(location=_loc(cell=None, path="/" + _over(n)))]),
    "location.source": lambda n: Report(1, [_diag(location=_loc(source="w = torch.randn(1, 1)  # " + _over(n)))]),
    "related": lambda n: Report(1, [_diag(related=[Related(_loc(line=i + 1), "here") for i in range(n + 5)])]),
    "related.message": lambda n: Report(1, [_diag(related=[Related(_loc(), _over(n, "🔥"))])]),
    "edit.new_text": lambda n: Report(1, [_diag(fix=Fix("Add it", Applicability.SAFE,
                                                        (Edit(_loc().at(21), _over(n)),)))]),
    "fix.title": lambda n: Report(1, [_diag(fix=Fix(_over(n), Applicability.UNSAFE, (Edit(_loc().at(21), "x"),)))]),
    "fix.edits": lambda n: Report(1, [_diag(fix=Fix("Many", Applicability.SAFE,
                                                    tuple(Edit(_loc().at(i + 1), "x") for i in range(n + 5))))]),
    "diagnostic.name": lambda n: Report(1, [_diag(name="-".join(["name"] * (n // 4 + 5)))]),
    "diagnostic.message": lambda n: Report(1, [_diag(message=f"`{LONG_NAME}` is created without `requires_grad=True`"
                                                             + _over(n - 3000))]),
    "diagnostic.help": lambda n: Report(1, [_diag(help=f"Create `{LONG_NAME}` with `requires_grad=True`." + _over(n))]),
    "diagnostic.related": lambda n: EXTREMES["related"](n),
    "diagnostic.url": lambda n: Report(1, [_diag()]),  # built from the code: cannot grow
}


def test_every_schema_limit_has_a_generated_extreme():
    limits = _limits()
    assert {"location.source", "location.path", "related.message", "diagnostic.message",
            "fix.edits", "diagnostics"} <= set(limits)
    missing = {path for path in limits if path not in EXTREMES}
    assert not missing, f"schema limits without an extreme in this test: {missing}"


@pytest.mark.parametrize("path", sorted(EXTREMES))
def test_payload_fits_the_schema_at_every_limit(path, monkeypatch):
    import gradwatch

    limit = _limits().get(path, 100)
    monkeypatch.setattr(gradwatch, "__version__", _over(64))
    payload = EXTREMES[path](limit).to_payload()
    VALIDATOR.validate(payload)  # every maxLength / maxItems holds
    json.dumps(payload, allow_nan=False)


def test_long_source_line_is_cut_with_an_ellipsis_and_keeps_its_columns():
    source = "w = torch.randn(1, 1)  # " + "d" * 12000  # a 12,025-character line
    fix = Fix("Add", Applicability.SAFE, (Edit(_loc(source=source).at(21), ", x"),))
    d = _diag(location=_loc(source=source), fix=fix)
    [out] = _payload(d)["diagnostics"]
    loc = out["location"]
    assert len(loc["source"]) == 10000 and loc["source"].endswith("…")
    assert source.startswith(loc["source"][:-1])
    assert (loc["line"], loc["column"], loc["end_line"], loc["end_column"]) == (9, 5, 9, 22)
    assert out["fix"]["applicability"] == "safe"  # the edit itself is intact; the editor checks the prefix
    assert out["fix"]["edits"][0]["location"]["source"] == loc["source"]


def test_long_variable_name_message_is_cut_to_the_limit():
    message = f"`{LONG_NAME}` is created without `requires_grad=True`, so no gradient can reach it"
    [out] = _payload(_diag(message=message))["diagnostics"]
    assert len(out["message"]) == 2000 and out["message"] == message[:1999] + "…"
    astral = "🔥" * 2500
    [out] = _payload(_diag(message=astral))["diagnostics"]
    assert len(out["message"]) == 2000  # characters (code points), as JSON Schema counts


def test_a_fix_that_cannot_be_sent_whole_becomes_advice():
    too_long = Fix("Replace the literal", Applicability.SAFE, (Edit(_loc().at(5, 22), "x" * 10001),))
    [out] = _payload(_diag(fix=too_long))["diagnostics"]
    assert out["fix"] == {"title": "Replace the literal", "applicability": "display-only", "edits": []}
    many = Fix("Many edits", Applicability.UNSAFE, tuple(Edit(_loc().at(i + 1), "x") for i in range(101)))
    [out] = _payload(_diag(fix=many))["diagnostics"]
    assert out["fix"]["applicability"] == "display-only" and out["fix"]["edits"] == []


def test_locations_that_cannot_be_sent_are_dropped_not_misplaced():
    far = _loc(cell=None, path="/" + "p" * 5000)
    d = _diag(location=far, related=[Related(far, "there"), Related(_loc(), "here")],
              fix=Fix("Edit there", Applicability.SAFE, (Edit(far.at(1), "x"),)))
    [out] = _payload(d)["diagnostics"]
    assert out["location"] is None
    assert [r["message"] for r in out["related"]] == ["here"]
    assert out["fix"]["applicability"] == "display-only" and out["fix"]["edits"] == []


def test_ranges_are_normalised_to_valid_columns():
    odd = Location(line=0, column=0, end_line=0, end_column=0, source="x", cell=2)
    backwards = Location(line=5, column=9, end_line=5, end_column=3, source="abcdefghij", cell=2)
    payload = _payload(_diag(location=odd), _diag(location=backwards, message="other"))
    VALIDATOR.validate(payload)
    first, second = (d["location"] for d in payload["diagnostics"])
    assert (first["line"], first["column"], first["end_line"], first["end_column"]) == (1, 1, 1, 1)
    assert (second["line"], second["column"], second["end_line"], second["end_column"]) == (5, 9, 5, 9)


def test_payload_caps_diagnostics_related_and_the_execution_count():
    report = Report(execution_count=-1, diagnostics=[_diag(message=f"m{i}") for i in range(1005)])
    payload = report.to_payload()
    assert payload["cell"]["execution_count"] is None
    assert len(payload["diagnostics"]) == 1000 and payload["diagnostics"][-1]["message"] == "m999"
    many = _diag(related=[Related(_loc(line=i + 1), "r") for i in range(150)])
    assert len(_payload(many)["diagnostics"][0]["related"]) == 100
