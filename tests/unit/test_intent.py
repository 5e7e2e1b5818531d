"""intent.py: which tensors the cell's own code trains (reads `.grad` of, updates with it)."""

from __future__ import annotations

from gradwatch import intent


def test_trained_names_from_grad_reads_and_updates():
    code = "for p in (w, b):\n    p.data.sub_(0.1 * p.grad)\nv -= lr * v.grad\nopt.zero_grad()\n"
    assert intent.trained_names(code) == {"w", "b", "p", "v"}


def test_a_cell_without_a_grad_word_is_not_parsed(monkeypatch):
    parsed = []
    real_parse = intent.ast.parse
    monkeypatch.setattr(intent.ast, "parse", lambda code: parsed.append(code) or real_parse(code))
    long_cell = "\n".join(f"z{i} = {i}" for i in range(5000)) + "\nopt.zero_grad()\nw.requires_grad_()\n"
    assert intent.trained_names(long_cell) == set() and parsed == []
    assert intent.trained_names("w.grad\n") == {"w"} and len(parsed) == 1
    # a non-ASCII spelling of `grad` (identifiers are NFKC-normalized) is still parsed
    assert intent.trained_names("w.ｇｒａｄ\n") == {"w"} and len(parsed) == 2
