"""torch.compile under gradwatch: dynamo sees the program exactly as without gradwatch (same
frames and graphs, no graph breaks, no recompiles, no warnings), and a cut inside a compiled
forward is still found."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.slow  # dynamo compiles in fresh processes: many seconds of CPU; the full run and CI run them

ROOT = Path(__file__).resolve().parents[2]


def _run_scenario(tmp_path_factory: pytest.TempPathFactory, name: str, source: str) -> dict:
    """Run a scenario script in a fresh process (dynamo's caches and counters start empty; a
    file, so that its lines can be shown) and return the JSON its last line prints."""
    script = tmp_path_factory.mktemp("compiled") / name
    script.write_text(source)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])

# What the compiled-model and compiled-step scenarios share: imports and a model whose `forward`
# may cut its hidden layer off with `.detach()`.
_PRELUDE = textwrap.dedent("""
    import json, sys, warnings
    import torch, torch.nn as nn, torch.nn.functional as F
    import gradwatch

    class Net(nn.Module):
        def __init__(self, cut):
            super().__init__()
            self.a, self.b, self.cut = nn.Linear(8, 16), nn.Linear(16, 3), cut

        def forward(self, x):
            h = torch.relu(self.a(x))
            return self.b(h.detach() if self.cut else h)
""")

# One process, so that the first watched run is also the one that imports dynamo (gradwatch
# then hooks it from inside the cell's torch.compile()). backend="eager": dynamo's part (frames,
# graphs, guards) is what gradwatch could disturb, and it is quick.
_SCENARIO = _PRELUDE + textwrap.dedent("""

    class WithProbe(nn.Module):  # a probe on detached features: `a` still trains through `b`
        def __init__(self):
            super().__init__()
            self.a, self.b, self.probe = nn.Linear(8, 16), nn.Linear(16, 3), nn.Linear(16, 3)

        def forward(self, x):
            h = torch.relu(self.a(x))
            return self.b(h), self.probe(h.detach())

    def run(watched, cut=False, probe=False):
        imported = "torch._dynamo" in sys.modules
        if imported:
            torch._dynamo.reset()
            torch._dynamo.utils.counters.clear()
        torch.manual_seed(0)
        model = WithProbe() if probe else Net(cut)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
        codes = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            session = gradwatch.watch(warn=False, namespace=dict(model=model, opt=opt)) if watched else None
            report = session.__enter__() if session else None
            try:
                compiled = torch.compile(model, backend="eager")
                losses = []
                for _ in range(4):
                    opt.zero_grad()
                    out = compiled(x)
                    if probe:  # the probe's term trains the probe
                        loss = nn.functional.cross_entropy(out[0], y) + nn.functional.cross_entropy(out[1], y)
                    else:
                        loss = nn.functional.cross_entropy(out, y)
                    loss.backward()
                    opt.step()
                    losses.append(loss.item())
            finally:
                if session:
                    session.__exit__(None, None, None)
                    codes = [(d.code, d.message, d.location and d.location.source) for d in report.diagnostics]
        counters = {k: dict(v) for k, v in torch._dynamo.utils.counters.items() if v}
        return dict(imported=imported, losses=losses, counters=counters, codes=codes,
                    warnings=sorted(f"{w.category.__name__}: {w.message} @{w.filename}" for w in caught),
                    weights=[p.detach().flatten().tolist() for p in model.parameters()])

    print(json.dumps(dict(first=run(True), plain=run(False), cut=run(True, cut=True),
                          plain_cut=run(False, cut=True), probe=run(True, probe=True))))
""")


@pytest.fixture(scope="module")
def compiled_runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _run_scenario(tmp_path_factory, "compiled_loop.py", _SCENARIO)


def test_dynamo_sees_the_same_program_with_and_without_gradwatch(compiled_runs: dict) -> None:
    # "first": the session's torch.compile() imports dynamo (hooked then); "cut": imported before
    assert (compiled_runs["first"]["imported"], compiled_runs["cut"]["imported"]) == (False, True)
    plain = compiled_runs["plain"]
    assert plain["counters"]["stats"] == {"calls_captured": 3, "unique_graphs": 1}
    assert plain["counters"]["frames"] == {"total": 1, "ok": 1}
    watched = compiled_runs["first"]
    assert watched["counters"] == plain["counters"]  # no graph break, no recompile
    assert watched["warnings"] == plain["warnings"] == []
    assert watched["losses"] == plain["losses"]
    assert watched["weights"] == plain["weights"]
    assert watched["codes"] == []  # a clean compiled loop: nothing to report


def test_a_cut_inside_a_compiled_forward_is_still_found(compiled_runs: dict) -> None:
    cut = compiled_runs["cut"]
    assert cut["counters"] == compiled_runs["plain_cut"]["counters"]
    assert "graph_break" not in cut["counters"]
    assert cut["warnings"] == []
    assert cut["losses"] == compiled_runs["plain_cut"]["losses"]
    # as found without torch.compile: the .detach() in the forward, naming what it cuts off
    assert [code for code, _, _ in cut["codes"]] == ["GW002"], cut["codes"]
    _, message, source = cut["codes"][0]
    assert source.strip() == "return self.b(h.detach() if self.cut else h)"
    assert "`h.detach()`" in message and "`model.a.weight`, `model.a.bias`" in message, message


def test_a_cut_that_leaves_another_path_is_no_finding(compiled_runs: dict) -> None:
    # `a` reaches the loss through `b` as well as through the probe's detached input
    probe = compiled_runs["probe"]
    assert "graph_break" not in probe["counters"] and probe["warnings"] == []
    assert probe["codes"] == []


# A compiled training step (the pattern of PyTorch's torch.compile tutorial): zero_grad,
# forward, backward and step inside one compiled function. Dynamo breaks its graph at
# zero_grad (torch disables dynamo there), at backward and inside step; the step's hooks are
# traced into its graph. gradwatch must leave dynamo's view as it is and still see the steps.
_STEP_SCENARIO = _PRELUDE + textwrap.dedent("""

    def run(watched, bug=None):
        if "torch._dynamo" in sys.modules:
            torch._dynamo.reset()
            torch._dynamo.utils.counters.clear()
        torch.manual_seed(0)
        model = Net(bug == "detach")
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        batches = [(torch.randn(32, 8), torch.randint(0, 3, (32,))) for _ in range(5)]

        def train(mod, batch):
            if bug != "no zero_grad":
                opt.zero_grad(True)
            loss = F.cross_entropy(mod(batch[0]), batch[1])
            loss.backward()
            opt.step()
            return loss

        codes = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            session = gradwatch.watch(warn=False, namespace=dict(model=model, opt=opt)) if watched else None
            report = session.__enter__() if session else None
            try:
                train_opt = torch.compile(train, backend="aot_eager")
                losses = [train_opt(model, batch).item() for batch in batches]
            finally:
                if session:
                    session.__exit__(None, None, None)
                    codes = [(d.code, d.message) for d in report.diagnostics]
        counters = {k: dict(v) for k, v in torch._dynamo.utils.counters.items() if v}
        return dict(losses=losses, counters=counters, codes=codes,
                    warnings=sorted(f"{w.category.__name__}: {w.message} @{w.filename}" for w in caught),
                    weights=[p.detach().flatten().tolist() for p in model.parameters()])

    run(False)  # (the first compile imports parts of torch that warn once)
    print(json.dumps(dict(watched=run(True), plain=run(False), no_zero_grad=run(True, "no zero_grad"),
                          detach=run(True, "detach"))))
""")


@pytest.fixture(scope="module")
def compiled_steps(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _run_scenario(tmp_path_factory, "compiled_step.py", _STEP_SCENARIO)


def _graph_breaks(counters: dict) -> dict[str, int]:
    """Graph-break reasons, with the one wording gradwatch changes made equal: dynamo meets the
    torch-disabled `zero_grad` as a call inside gradwatch's wrapper ("call function marked as
    skipped") instead of as a method it tries to inline ("inline function ..."); the break is
    the same one, at the same call."""
    out: dict[str, int] = {}
    for reason, n in counters.get("graph_break", {}).items():
        skipped = re.search(r"Attempted to (?:call|inline) function marked as skipped.*?qualname: ([\w.]+)",
                            reason, re.S)
        key = f"skipped {skipped.group(1)}" if skipped else reason
        out[key] = out.get(key, 0) + n
    return out


def test_a_compiled_training_step_is_compiled_as_without_gradwatch(compiled_steps: dict) -> None:
    plain, watched = compiled_steps["plain"], compiled_steps["watched"]
    # zero_grad, backward and the two breaks inside SGD.step
    assert _graph_breaks(watched["counters"]) == _graph_breaks(plain["counters"])
    assert sum(_graph_breaks(plain["counters"]).values()) == 4
    assert "skipped Optimizer.zero_grad" in _graph_breaks(plain["counters"])
    # frames (train, its resumes, the step's and aot_eager's own), graphs, resumes, recompiles
    others = {k: v for k, v in plain["counters"].items() if k != "graph_break"}
    assert {k: v for k, v in watched["counters"].items() if k != "graph_break"} == others
    assert others["stats"] == {"calls_captured": 8, "unique_graphs": 2}
    assert "recompiles" not in others
    assert watched["warnings"] == plain["warnings"] == []
    assert watched["losses"] == plain["losses"]
    assert watched["weights"] == plain["weights"]
    assert watched["codes"] == []  # its steps are seen: no "backward() without step()"


def test_bugs_inside_a_compiled_training_step_are_found(compiled_steps: dict) -> None:
    no_zero_grad, detach = compiled_steps["no_zero_grad"], compiled_steps["detach"]
    assert no_zero_grad["warnings"] == detach["warnings"] == []
    assert [code for code, _ in no_zero_grad["codes"]] == ["GW101"], no_zero_grad["codes"]
    # the compiled function's .detach() leaves `a` without a gradient at every step
    assert [code for code, _ in detach["codes"]] == ["GW006"], detach["codes"]
    assert "`model.a.weight`, `model.a.bias`" in detach["codes"][0][1]


# Facts read from the graph dynamo made of a compiled module (backend="aot_eager": autograd sees
# one compiled function, whose backward lists every parameter, also those it gives no gradient).
_GRAPH_SCENARIO = textwrap.dedent("""
    import json, sys, warnings
    import torch, torch.nn as nn, torch.nn.functional as F
    import gradwatch

    class MaskedGrid(nn.Module):
        def __init__(self):
            super().__init__()
            self.grid = nn.Parameter(torch.randn(4, 8))
            self.mask_logits = nn.Parameter(torch.ones(4, 8))
            self.decoder = nn.Linear(8, 1)

        def forward(self, x):
            grid = (self.grid * (torch.sigmoid(self.mask_logits) >= 0.5)).detach()
            return self.decoder(x @ grid).squeeze(1)

    class Classifier(nn.Module):
        def __init__(self, last):
            super().__init__()
            self.last = last
            if last == "softmax":
                self.head = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3),
                                          nn.Softmax(dim=1))
            elif last == "sigmoid":
                self.head = nn.Sequential(nn.Linear(8, 3), nn.Sigmoid())
            elif last == "log_softmax":
                self.head = nn.Sequential(nn.Linear(8, 3), nn.LogSoftmax(dim=1))
            else:
                self.head = nn.Linear(8, 3)

        def forward(self, x):
            out = self.head(x)
            return F.softmax(out, dim=1) if self.last == "functional" else out

    def run(watched, case):
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        torch.manual_seed(0)
        x = torch.randn(16, 4 if case == "mask" else 8)
        if case == "mask":
            model, loss_fn, y = MaskedGrid(), F.mse_loss, torch.randn(16)
        elif case == "sigmoid":
            model, loss_fn = Classifier(case), nn.BCELoss()
            y = torch.randint(0, 2, (16, 3)).float()
        else:
            model, y = Classifier(case), torch.randint(0, 3, (16,))
            loss_fn = F.nll_loss if case == "log_softmax" else nn.CrossEntropyLoss()
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        codes = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            session = gradwatch.watch(warn=False, namespace=dict(model=model, opt=opt)) if watched else None
            report = session.__enter__() if session else None
            try:
                compiled = torch.compile(model, backend="aot_eager")
                losses = []
                for _ in range(3):
                    loss = loss_fn(compiled(x), y)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    losses.append(loss.item())
            finally:
                if session:
                    session.__exit__(None, None, None)
                    codes = [(d.code, d.message, d.location and d.location.source.strip(),
                              [r.location.source.strip() for r in d.related if r.location])
                             for d in report.diagnostics]
        counters = {k: dict(v) for k, v in torch._dynamo.utils.counters.items() if v}
        return dict(losses=losses, counters=counters, codes=codes,
                    warnings=sorted(f"{w.category.__name__}: {w.message}" for w in caught))

    torch.compile(nn.Linear(2, 2), backend="aot_eager")(torch.randn(1, 2))  # (first-compile warnings)
    cases = ("mask", "softmax", "functional", "sigmoid", "log_softmax")
    print(json.dumps({case: dict(watched=run(True, case), plain=run(False, case)) for case in cases}))
""")


@pytest.fixture(scope="module")
def compiled_graphs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _run_scenario(tmp_path_factory, "compiled_graphs.py", _GRAPH_SCENARIO)


@pytest.mark.parametrize("case", ["mask", "softmax", "functional", "sigmoid", "log_softmax"])
def test_reading_compiled_graphs_leaves_dynamo_as_without_gradwatch(compiled_graphs: dict, case: str) -> None:
    watched, plain = compiled_graphs[case]["watched"], compiled_graphs[case]["plain"]
    assert watched["counters"] == plain["counters"]
    assert "graph_break" not in plain["counters"]
    assert watched["warnings"] == plain["warnings"] == []
    assert watched["losses"] == plain["losses"]


def test_a_detach_that_cuts_some_parameters_of_a_compiled_module_is_the_cause(compiled_graphs: dict) -> None:
    # the decoder still trains; the grid and its mask get no gradient although autograd's graph
    # lists them as inputs of the compiled backward
    codes = compiled_graphs["mask"]["watched"]["codes"]
    assert [code for code, *_ in codes] == ["GW002"], codes
    _, message, source, _ = codes[0]
    assert source == "grid = (self.grid * (torch.sigmoid(self.mask_logits) >= 0.5)).detach()"
    assert "`model.grid`, `model.mask_logits`" in message and "decoder" not in message, message


def test_the_softmax_that_made_a_compiled_output_is_seen_by_the_loss_checks(compiled_graphs: dict) -> None:
    # an nn.Softmax layer: the line to edit is where it is built
    codes = compiled_graphs["softmax"]["watched"]["codes"]
    assert [(code, source) for code, _, source, _ in codes] == [("GW109", "nn.Softmax(dim=1))")], codes
    assert codes[0][3] == ["loss = loss_fn(compiled(x), y)"]
    # F.softmax in forward: that call
    codes = compiled_graphs["functional"]["watched"]["codes"]
    assert [(code, source) for code, _, source, _ in codes] == [
        ("GW109", 'return F.softmax(out, dim=1) if self.last == "functional" else out')], codes
    # an nn.Sigmoid layer into BCELoss: the loss call, the sigmoid related
    codes = compiled_graphs["sigmoid"]["watched"]["codes"]
    assert [(code, source) for code, _, source, _ in codes] == [("GW110", "loss = loss_fn(compiled(x), y)")], codes
    assert codes[0][3] == ["self.head = nn.Sequential(nn.Linear(8, 3), nn.Sigmoid())"]
    # log_softmax into nll_loss is what nll_loss expects
    assert compiled_graphs["log_softmax"]["watched"]["codes"] == []


# torch.compile across cells: compiled in a plain cell, called again in a %%gradwatch cell, then
# in a plain one (and the other way round). Dynamo guards the frames it compiled on what they
# read, the optimizer's global step hooks among them: a frame compiled in one cell must keep
# running in the next, with or without gradwatch, without being compiled again.
_ACROSS_CELLS_SCENARIO = _PRELUDE + textwrap.dedent("""

    def run(kind, watched_cells, bug=None):
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        torch.manual_seed(0)
        model = Net(False)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        batches = [(torch.randn(32, 8), torch.randint(0, 3, (32,))) for _ in range(9)]
        compiled_model = torch.compile(model, backend="eager")

        def train(batch):  # the whole step compiled, as in PyTorch's tutorial
            if bug != "no zero_grad":
                opt.zero_grad(True)
            loss = F.cross_entropy(model(batch[0]), batch[1])
            loss.backward()
            opt.step()
            return loss

        def model_step(batch):  # the model compiled, the step plain
            opt.zero_grad()
            loss = F.cross_entropy(compiled_model(batch[0]), batch[1])
            loss.backward()
            opt.step()
            return loss

        step = torch.compile(train, backend="eager") if kind == "step" else model_step
        cells = []
        for cell, watched in enumerate(watched_cells):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                session = gradwatch.watch(warn=False, namespace=dict(model=model, opt=opt)) if watched else None
                report = session.__enter__() if session else None
                try:
                    losses = [step(batch).item() for batch in batches[3 * cell:3 * cell + 3]]
                finally:
                    if session:
                        session.__exit__(None, None, None)
            cells.append(dict(
                counters={k: dict(v) for k, v in torch._dynamo.utils.counters.items() if v},
                losses=losses, codes=[d.code for d in report.diagnostics] if session else None,
                warnings=sorted(f"{w.category.__name__}: {w.message} @{w.filename}" for w in caught)))
        return cells

    run("step", (False,) * 3)  # (the first compile imports parts of torch that warn once)
    orders = dict(plain=(False, False, False), watched_second=(False, True, False),
                  watched_first=(True, False, False))
    out = {kind: {name: run(kind, cells) for name, cells in orders.items()} for kind in ("step", "model")}
    out["no_zero_grad"] = dict(plain=run("step", orders["plain"], "no zero_grad"),
                               watched_second=run("step", orders["watched_second"], "no zero_grad"))
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def across_cells(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _run_scenario(tmp_path_factory, "across_cells.py", _ACROSS_CELLS_SCENARIO)


def _dynamo_view(cell: dict) -> dict:
    """What dynamo did up to the end of a cell: frames, graphs, resumes, recompiles, graph breaks."""
    counters = {k: v for k, v in cell["counters"].items() if k != "graph_break"}
    return dict(counters, graph_break=_graph_breaks(cell["counters"]))


@pytest.mark.parametrize("kind", ["step", "model"])
@pytest.mark.parametrize("order", ["watched_second", "watched_first"])
def test_a_step_compiled_in_another_cell_runs_as_without_gradwatch(across_cells: dict, kind: str,
                                                                   order: str) -> None:
    plain, cells = across_cells[kind]["plain"], across_cells[kind][order]
    # each cell: no frame compiled again, no graph break more, no warning
    assert [_dynamo_view(c) for c in cells] == [_dynamo_view(c) for c in plain]
    assert [c["warnings"] for c in cells] == [c["warnings"] for c in plain] == [[], [], []]
    assert [c["losses"] for c in cells] == [c["losses"] for c in plain]
    watched = cells[1] if order == "watched_second" else cells[0]
    assert watched["codes"] == []  # its steps are seen: no "backward() without step()"
    if kind == "step":  # the step's frames: the train function, its resumes, the step's own
        assert plain[-1]["counters"]["frames"] == {"total": 13, "ok": 13}
        assert sum(_graph_breaks(plain[-1]["counters"]).values()) == 4
    else:
        assert plain[-1]["counters"]["frames"] == {"total": 1, "ok": 1}


def test_a_bug_in_a_step_compiled_in_an_earlier_cell_is_found(across_cells: dict) -> None:
    plain, cells = across_cells["no_zero_grad"]["plain"], across_cells["no_zero_grad"]["watched_second"]
    assert [_dynamo_view(c) for c in cells] == [_dynamo_view(c) for c in plain]
    assert [c["codes"] for c in cells] == [None, ["GW101"], None]
