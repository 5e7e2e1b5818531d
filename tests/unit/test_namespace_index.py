"""The notebook namespace's index (issue 12, the 100,000-names row): after its one read per cell,
a large namespace is compared only where the cell's code (or a notebook function) can rebind it,
so a refresh costs what the cell can change, not the size of the namespace. Counted, not timed."""

from __future__ import annotations

import pytest

from gradwatch.locate import NamespaceIndex, Namer
from gradwatch.locate import naming

_LOOP_SOURCE = """
for _ in range(4):
    opt.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
"""
_LOOP = compile(_LOOP_SOURCE, "notebook_cell.py", "exec")


def _notebook(size: int) -> dict:
    """``size`` entries (numbers, strings, lists of numbers, small tensors, dicts), then a model,
    its optimizer and data."""
    import torch

    kinds = (lambda i: i, lambda i: f"s{i}", lambda i: [i, i], lambda i: torch.zeros(2), lambda i: {"k": i})
    ns = {f"v{i}": kinds[i % 5](i) for i in range(size)}
    exec("import torch\nfrom torch import nn\nmodel = nn.Linear(4, 1)\n"
         "opt = torch.optim.SGD(model.parameters(), lr=0.1)\nx, y = torch.randn(8, 4), torch.randn(8, 1)\n", ns)
    return ns


def _work(size: int) -> tuple[int, int]:
    """(entries read one by one, bindings compared after the first read) in a watched 4-step
    loop over a notebook of ``size`` entries."""
    from gradwatch.session import Watch

    ns = _notebook(size)
    session = Watch(namespace=ns, warn=False, code=_LOOP_SOURCE)
    with session as report:
        exec(_LOOP, ns)
    assert report.codes == []
    index = session._ns_index
    return index.entries_read, index.entries_compared


def test_a_watched_cell_compares_the_bindings_its_code_can_change_whatever_the_namespace_size():
    (read_small, compared_small), (read_large, compared_large) = _work(1_000), _work(100_000)
    # each tensor (1 entry in 5) is read once, whatever the size; the same few entries read again
    assert read_large - read_small == (100_000 - 1_000) // 5
    # 1,000 entries: all bindings compared at each refresh (cheaper than working out which);
    # 100,000: only those of the loop's names (`opt`, `loss`, `model`, `x`, `y`, `nn`, `_`...)
    assert compared_small >= 2 * 1_000
    assert 0 < compared_large <= 60, compared_large
    assert _work(20_000)[1] == compared_large  # (the same names, whatever the size)


@pytest.fixture
def compare_only_what_the_cell_rebinds(monkeypatch):
    monkeypatch.setattr(naming, "COMPARE_ALL_BELOW", 0)


def _same_names(ns: dict, index: NamespaceIndex) -> None:
    fresh, kept = Namer(ns), Namer(ns, index=index)
    for value in [*ns.values(), *ns["model"].parameters()]:
        assert kept.name(value) == fresh.name(value), fresh.name(value)


def test_names_kept_up_to_date_from_the_cells_names_are_those_a_fresh_read_finds(compare_only_what_the_cell_rebinds):
    import torch

    ns = _notebook(50)
    exec("def rebuild():\n    global model\n    model = nn.Linear(4, 1)\n", ns)  # a notebook function's global
    ns.update(early=torch.ones(1), _hidden=torch.ones(1))
    index = NamespaceIndex(ns, code="loss = model(x).sum()\nw = model.weight\nrebuild()\nx = early\n")
    _same_names(ns, index)
    assert index._watched is not None  # (only the cell's and `rebuild`'s names are compared)
    ns["loss"] = torch.ones(1)  # added
    ns["w"] = ns["model"].weight  # added, naming a parameter its module names first
    _same_names(ns, index)
    ns["rebuild"]()  # rebinds `model` (a global the function assigns)
    ns["x"] = ns["early"]  # rebound to a tensor an earlier entry names
    ns["loss"] = torch.zeros(1)  # rebound
    _same_names(ns, index)
    assert Namer(ns, index=index).name(ns["model"].weight) == "model.weight"
    assert Namer(ns, index=index).name(ns["early"]) == "x"  # (`x` comes before `early`)
    # a refresh compares the bindings of those names only (not the 50 numbers, strings, tensors)
    compared = index.entries_compared
    index.refresh()
    assert sorted(index._watched) == ["early", "loss", "model", "nn", "rebuild", "w", "x"]
    assert index.entries_compared - compared == 7
    # a name neither the cell nor a notebook function can rebind is not compared: as last read
    ns["v3"] = torch.ones(1)
    assert Namer(ns, index=index).name(ns["v3"]) is None


@pytest.mark.parametrize("code", ["globals()['w'] = w2\n", "del loss\n", "from torch import *\n",
                                  "get_ipython().run_line_magic('time', '')\n"])
def test_a_cell_that_can_rebind_any_name_is_compared_in_full(compare_only_what_the_cell_rebinds, code):
    import torch

    ns = _notebook(50)
    index = NamespaceIndex(ns, code=code)
    _same_names(ns, index)
    assert index._watched is None
    ns["v3"] = torch.ones(1)
    _same_names(ns, index)
    assert Namer(ns, index=index).name(ns["v3"]) == "v3"


def test_a_notebook_function_that_can_rebind_any_name_makes_the_index_compare_in_full(
        compare_only_what_the_cell_rebinds):
    ns = _notebook(50)
    exec("def load(values):\n    globals().update(values)\n", ns)
    index = NamespaceIndex(ns, code="load({})\n")
    _same_names(ns, index)
    assert index._watched is None


def test_a_global_a_notebook_class_assigns_is_compared(compare_only_what_the_cell_rebinds):
    ns = _notebook(50)
    ns["__name__"] = "__main__"
    exec("class Hostile:\n    def __getattr__(self, name):\n        raise RuntimeError(name)\n"
         "class Trainer:\n    helper = Hostile()\n    @staticmethod\n    def reset():\n"
         "        global model\n        model = nn.Linear(4, 1)\n", ns)
    index = NamespaceIndex(ns, code="Trainer.reset()\n")
    _same_names(ns, index)
    assert index._watched is not None and "model" in index._watched
    ns["Trainer"].reset()
    _same_names(ns, index)


def test_a_cell_with_nothing_to_expand_in_its_magic_line_does_not_copy_the_namespace(shell, monkeypatch):
    """IPython's expansion of a magic's line (``{name}``, ``$name``) copies the whole namespace
    first: ``%%gradwatch`` expands its line itself, only when there is something to expand."""
    shell.run_cell("import torch\ncodes_for_the_test = 'GW0'\nw_for_the_test = torch.ones(2, requires_grad=True)\n")
    expanded: list[str] = []
    var_expand = shell.var_expand
    monkeypatch.setattr(shell, "var_expand", lambda line, *args, **kwargs: expanded.append(line) or var_expand(
        line, *args, **kwargs))
    assert shell.run_cell("%%gradwatch --quiet\n(w_for_the_test * 2).sum().backward()\n").success
    assert expanded == []
    result = shell.run_cell("%%gradwatch --quiet --select {codes_for_the_test}X\n"
                            "(w_for_the_test * 2).sum().backward()\n")
    # expanded as IPython expands it: `GW0X` is no rule code
    assert expanded == ["--quiet --select {codes_for_the_test}X"]
    assert "GW0X" in str(result.error_in_exec)
