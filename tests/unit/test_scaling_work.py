"""Work that must not grow with the user's world (issue 12), counted rather than timed: how
often a watched cell's text is transformed and parsed, and which parts of a long cell the
cell-history searches walk."""

from __future__ import annotations

import ast
import builtins

import pytest

from gradwatch import magic
from gradwatch.locate import SourceMap
from gradwatch.locate import source_map as source_map_module

_MARK = "\nmarker_7919 = 1\n"  # a line of the body: found in what is parsed, not in a string literal


def _parses_of_the_body(shell, monkeypatch, body: str) -> tuple[int, int]:
    """(times the body was parsed, times it was transformed) while ``%%gradwatch`` ran it."""
    parses, transforms = [0], [0]
    compile_, transform = builtins.compile, shell.transform_cell

    def counting_compile(source, *args, **kwargs):
        flags = args[2] if len(args) > 2 else kwargs.get("flags", 0)
        if isinstance(source, str) and _MARK in source and flags & ast.PyCF_ONLY_AST:
            parses[0] += 1
        return compile_(source, *args, **kwargs)

    def counting_transform(cell):
        if _MARK in cell and not cell.startswith("%%"):
            transforms[0] += 1
        return transform(cell)

    monkeypatch.setattr(builtins, "compile", counting_compile)
    monkeypatch.setattr(shell, "transform_cell", counting_transform)
    result = shell.run_cell("%%gradwatch --quiet\n" + body, store_history=True)
    monkeypatch.undo()
    assert result.success
    return parses[0], transforms[0]


def test_a_watched_cell_is_transformed_and_parsed_once(shell, monkeypatch):
    filler = "".join(f"z{i} = {i}\n" for i in range(50))
    body = "import torch" + _MARK + filler + "w = torch.ones(2, requires_grad=True)\n(w * 2).sum().backward()\n"
    assert _parses_of_the_body(shell, monkeypatch, body) == (1, 1)
    assert magic._prepared is None  # the parsed body is not kept after the cell


def test_a_trailing_semicolon_is_found_in_the_last_statements_only():
    cases = ["x = 1\n1 + 1;", "x = 1\n1 + 1", "x = 1; 1 + 1;", "x = (1,\n2)\ny = 3;  # done\n",
             "def f():\n    return 1\n\nf();\n", "s = '''\n;'''\n", "a = 1\nb = 2; c = 3\n", "1;\n2\n", ""]
    for code in cases:
        tree = ast.parse("\n" + code)
        tail = magic._last_statements(code, tree)
        assert magic._ends_with_semicolon(tail) == magic._ends_with_semicolon(code), code
        assert code.endswith(tail)
    long = "".join(f"z{i} = {i}\n" for i in range(5000)) + "1 + 1;\n"
    assert magic._last_statements(long, ast.parse("\n" + long)) == "1 + 1;\n"


def test_the_source_map_uses_the_magics_tree_and_walks_statements_only(monkeypatch):
    code = "\n" + "".join(f"z{i} = f({i})\n" for i in range(200)) + "for b in data:\n    with torch.no_grad():\n" \
        "        model = Net()\n"
    tree = ast.parse(code)
    sm = SourceMap()
    sm.register_cell("<cell-5>", 5, "%%gradwatch" + code, code, tree=tree)
    monkeypatch.setattr(source_map_module, "_parse", lambda code: pytest.fail("parsed again"))
    walked: list[ast.AST] = []
    statements = source_map_module._statements
    monkeypatch.setattr(source_map_module, "_statements", lambda t: walked.extend(statements(t)) or walked)
    found = sm.find_assignment("model")
    assert found is not None and (found.line, found.source) == (204, "        model = Net()")
    assert len(walked) == 1 + 200 + 3  # the module and its statements: no expression node
    assert all(isinstance(n, (ast.Module, ast.stmt)) for n in walked)
    assert sm.find_call({"Net"}).line == 204  # calls: walked when a call search asks for them


def test_the_statement_walk_keeps_ast_walk_order():
    code = ("try:\n    a = 1\nexcept E:\n    b = 2\n    if c:\n        d = 3\nelse:\n    e = 4\nfinally:\n    f = 5\n"
            "match x:\n    case 1:\n        g = 6\nclass K:\n    h = 7\n    def m(self):\n        i = 8\n"
            "with w:\n    for j in k:\n        l = 9\n    else:\n        m = 10\n")
    tree = ast.parse(code)
    expected = [n for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.stmt, ast.excepthandler, ast.match_case))]
    assert list(source_map_module._statements(tree)) == expected


# --- the notebook namespace: read once per cell, then only what changed ----------------------------
def _notebook(size: int) -> dict:
    """A notebook namespace of ``size`` entries: numbers, strings, lists and small tensors."""
    import torch

    kinds = (lambda i: i, lambda i: f"s{i}", lambda i: [i, i], lambda i: torch.zeros(2), lambda i: (i, "t"))
    ns = {f"v{i}": kinds[i % 5](i) for i in range(size)}
    exec("import torch\nfrom torch import nn\nmodel = nn.Linear(4, 1)\n"
         "opt = torch.optim.SGD(model.parameters(), lr=0.1)\nx, y = torch.randn(8, 4), torch.randn(8, 1)\n", ns)
    return ns


_LOOP = compile("""
for _ in range(4):
    opt.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
""", "notebook_cell.py", "exec")


def _entries_read(size: int) -> int:
    from gradwatch.session import Watch

    ns = _notebook(size)
    session = Watch(namespace=ns, warn=False)
    with session as report:
        exec(_LOOP, ns)
    assert report.codes == []
    return session._ns_index.entries_read


def test_a_watched_cell_reads_each_namespace_entry_once_whatever_its_size():
    small, large = _entries_read(500), _entries_read(20_000)
    # the tensors (1 in 5) are read once, the lists and tuples of numbers not one by one; after
    # that only what the loop rebinds
    assert large - small == (20_000 - 500) // 5
    assert small < 500


def _python_calls_in_a_watched_cell(size: int) -> int:
    """Python-level calls (functions and builtins, as a profiler sees them) while a watched
    4-step loop runs over a notebook of ``size`` entries."""
    import gc
    import sys

    from gradwatch.session import Watch

    ns = _notebook(size)
    calls = [0]

    def count(frame, event, arg):
        if event in ("call", "c_call"):
            calls[0] += 1

    gc.collect()
    gc.disable()  # a collection inside the loop runs weakref callbacks: calls that vary run to run
    try:
        with Watch(namespace=ns, warn=False) as report:
            sys.setprofile(count)
            try:
                exec(_LOOP, ns)
            finally:
                sys.setprofile(None)
    finally:
        gc.enable()
    assert report.codes == []
    return calls[0]


def test_the_per_step_checks_do_not_walk_the_namespace():
    _python_calls_in_a_watched_cell(50)  # imports and first-use caches
    # the eval-mode check reads the index's modules, the rest reads it at C speed: not one
    # Python call more per namespace entry (each `isinstance` of a walk would count)
    assert _python_calls_in_a_watched_cell(500) == _python_calls_in_a_watched_cell(20_000) > 0


def test_names_kept_up_to_date_are_those_a_fresh_read_finds():
    import torch

    from gradwatch.locate import NamespaceIndex, Namer

    ns = _notebook(50)
    w = ns["model"].weight
    ns.update(w=w, xs=[torch.ones(1)], _hidden=torch.ones(1), a=torch.ones(1), b=torch.ones(1))
    index = NamespaceIndex(ns)

    def same_names():
        fresh, kept = Namer(ns), Namer(ns, index=index)
        for value in [*ns.values(), *ns["model"].parameters(), *ns["xs"]]:
            assert kept.name(value) == fresh.name(value), fresh.name(value)

    same_names()
    assert Namer(ns, index=index).name(w) == "model.weight"  # the module's name comes first
    ns["a"], ns["b"] = ns["b"], ns["a"]  # swapped
    ns["loss"] = torch.ones(1)  # added
    ns["model"].weight = torch.nn.Parameter(torch.ones(1, 4))  # replaced in place: `w` names the old one
    ns["xs"].append(torch.zeros(1))  # a list of tensors grows in place
    same_names()
    assert Namer(ns, index=index).name(w) == "w" and Namer(ns, index=index).name(ns["xs"][1]) == "xs[1]"
    del ns["v3"]  # a deletion: read again in full
    same_names()
    read = index.entries_read
    ns["loss"] = torch.ones(1)
    same_names()
    assert index.entries_read - read == 3  # `loss`, and `model` and `xs`, whose contents can change in place
    assert [name for name, _ in index.optimizers()] == ["opt"] and [name for name, _ in index.modules()] == ["model"]


@pytest.mark.parametrize("size", [50, 5_000])
def test_asking_for_optimizers_names_nothing_until_a_name_is_asked_for(size):
    # the adopted optimizer's assignment is looked for at the first zero_grad(): that must not
    # name a model's parameters (the first traced backward names them, once)
    from gradwatch.locate import NamespaceIndex, Namer

    ns = _notebook(size)
    code = "loss = model(x).sum()\nmodel.weight = nn.Parameter(torch.ones(1, 4))\nextra = nn.Linear(2, 2)\n" \
        "pair = [model.weight]"  # (named by two entries read together: the first one's name wins)
    index = NamespaceIndex(ns, code=code)
    index.refresh(contents=False)
    assert index.objects_named == 0 and index.names.get(id(ns["model"].weight)) is None
    assert [n for n, _ in index.optimizers()] == ["opt"] and [n for n, _ in index.modules()] == ["model"]
    exec(code, ns)  # rebound, changed in place, added
    index.refresh(contents=False)
    assert [n for n, _ in index.modules()] == ["model", "extra"]
    fresh, kept = Namer(ns), Namer(ns, index=index)
    for value in [*ns.values(), *ns["model"].parameters(), *ns["extra"].parameters()]:
        assert kept.name(value) == fresh.name(value), fresh.name(value)
    assert kept.name(ns["model"].weight) == "model.weight" and kept.name(ns["extra"].bias) == "extra.bias"
    assert kept.name(ns["pair"][0]) == "model.weight"
    index = NamespaceIndex(ns, code=code)  # the same, read together in one refresh of the contents
    index.refresh(contents=False)
    exec(code, ns)
    assert Namer(ns, index=index).name(ns["pair"][0]) == "model.weight"


def test_an_earlier_tensor_entry_names_a_parameter_before_its_module():
    import torch

    from gradwatch.locate import NamespaceIndex, Namer

    lin = torch.nn.Linear(2, 2)
    ns = {"early": lin.weight, "n": 3, "model": lin, "late": lin.bias, "_hidden": lin.weight, "again": lin.weight}
    index = NamespaceIndex(ns)

    def names() -> list[str | None]:
        kept = Namer(ns, index=index)
        found = [kept.name(value) for value in (lin.weight, lin.bias, lin)]
        assert found == [Namer(ns).name(value) for value in (lin.weight, lin.bias, lin)]
        return found

    assert names() == ["early", "model.bias", "model"]
    ns["early"] = torch.ones(1)  # rebound: the module's name comes first now
    assert names() == ["model.weight", "model.bias", "model"]
    ns["n"] = lin.weight  # a plain tensor entry before the module again
    assert names() == ["n", "model.bias", "model"]


def test_the_index_keeps_no_user_object_after_the_cell():
    import gc
    import weakref

    import torch

    from gradwatch.session import Watch

    ns = _notebook(10)
    session = Watch(namespace=ns, warn=False)
    with session:
        exec(_LOOP, ns)
    gone = weakref.ref(ns.pop("loss"))
    model = weakref.ref(ns.pop("model"))
    ns.pop("opt")
    gc.collect()
    assert gone() is None and model() is None
    assert isinstance(ns["x"], torch.Tensor)


# --- tracing: per-op work does not grow with the number of parameters --------------------------------
def _train_one_tensor_optimizers(params: list, iterations: int) -> list:
    """One SGD optimizer per tensor of ``params``, built and trained together for ``iterations``
    (zero_grad() each, one backward(), step() each: the 1,000-optimizer row of
    benchmarks/scaling.py); the optimizers."""
    import torch

    opts = [torch.optim.SGD([p], lr=1e-2) for p in params]
    for _ in range(iterations):
        for o in opts:
            o.zero_grad()
        torch.stack(params).square().sum().backward()
        for o in opts:
            o.step()
    return opts


def _python_calls(fn) -> tuple[int, object]:
    """The Python function calls while ``fn()`` runs, and its result; not counting gradwatch's
    wrapper of dynamo's `_maybe_set_eval_frame`, which torch's `disable` wrappers (every step()
    and zero_grad()) call twice as often once dynamo has run in the process: another test's
    compiled code would change the counts (as in test_step_cost). Without garbage collections
    inside: one runs weakref callbacks, calls that depend on what earlier tests left."""
    import gc
    import sys

    calls = [0]

    def count(frame, event, arg):
        if event == "call" and not (frame.f_code.co_name == "set_eval_frame"
                                    and frame.f_code.co_filename.endswith("compiled.py")):
            calls[0] += 1

    gc.collect()
    gc.disable()
    sys.setprofile(count)
    try:
        result = fn()
    finally:
        sys.setprofile(None)
        gc.enable()
    return calls[0], result


def _python_calls_in_traced_forward(extra_parameters: int) -> int:
    import torch

    from gradwatch.session import Watch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    frozen = torch.nn.ParameterList(torch.nn.Parameter(torch.zeros(2)) for _ in range(extra_parameters))
    opt = torch.optim.SGD([*model.parameters(), *frozen], lr=0.1)
    x = torch.randn(8, 4)
    ns = {"model": model, "frozen": frozen, "opt": opt, "x": x}
    with Watch(namespace=ns, warn=False):
        opt.zero_grad()
        model(x).pow(2).mean().backward()  # the first (traced) step, names read once
        opt.step()
        opt.zero_grad()
        calls, out = _python_calls(lambda: model(x).pow(2).mean())  # traced: every op recorded
        out.backward()
        opt.step()
    return calls


def test_per_op_tracing_work_does_not_grow_with_the_parameter_count():
    assert _python_calls_in_traced_forward(10) == _python_calls_in_traced_forward(2_000) > 0


def test_the_tensor_map_finds_by_identity_and_forgets_dead_tensors():
    import gc

    import torch

    from gradwatch.trace.provenance import TensorMap

    tensors = [torch.zeros(2) for _ in range(3)]
    records = TensorMap()
    for i, t in enumerate(tensors):
        records[t] = i
    assert [records.get(t) for t in tensors] == [0, 1, 2] and torch.zeros(2) not in records
    assert records.pop(tensors[1]) == 1 and records.get(tensors[1], "none") == "none"
    del tensors[0]
    gc.collect()
    assert len(records) == 1 and records.get(tensors[-1]) == 2  # the dead tensor's entry is gone


def _finite_checks_in_traced_forward(layers: int) -> tuple[int, int]:
    """Non-finite checks made while the first traced forward of ``x`` through ``layers`` linear
    layers runs (each layer reads ``x`` and two parameters): (tensors checked, batches checked)."""
    import torch

    from gradwatch.monitors import op_checks
    from gradwatch.session import Watch

    torch.manual_seed(0)
    model = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(layers))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 4)
    checked, calls = [0], [0]
    flush = op_checks.OpChecks.flush

    def counting_flush(self):
        if self.queue:
            checked[0] += len(self.queue)
            calls[0] += 1
        return flush(self)

    with Watch(namespace={"model": model, "opt": opt, "x": x}, warn=False) as report:
        op_checks.OpChecks.flush = counting_flush
        try:
            out = torch.stack([layer(x) for layer in model]).mean()  # traced: every op recorded
            out.backward()
        finally:
            op_checks.OpChecks.flush = flush
        opt.step()
    assert report.codes == []
    return checked[0], calls[0]


def test_a_traced_op_checks_each_tensor_once_per_iteration():
    # each linear's output and its two parameters; `x` once, not once per layer; the stack and
    # the mean: their outputs (their inputs were made by earlier ops). Checked in batches of
    # 1,024 (the last one at backward()): a call per thousand tensors, not one per tensor
    assert _finite_checks_in_traced_forward(10) == (10 * 3 + 1 + 2, 1)
    assert _finite_checks_in_traced_forward(400) == (400 * 3 + 1 + 2, 2)
    assert _finite_checks_in_traced_forward(1000) == (1000 * 3 + 1 + 2, 3)


def _eval_mode_walks(n_optimizers: int) -> tuple[int, list[str]]:
    """Walks of the modules in reach (GW115's eval-mode check) while ``n_optimizers`` one-tensor
    optimizers and one model's optimizer (its dropout left in eval mode) take 2 steps each."""
    import torch

    from gradwatch.monitors import step_order
    from gradwatch.session import Watch

    walks = [0]
    modules_in_reach = step_order.StepOrder._modules_in_reach

    def counting(self):
        walks[0] += 1
        return modules_in_reach(self)

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5))
    params = [torch.nn.Parameter(torch.randn(4)) for _ in range(n_optimizers)]
    namespace = {"model": model, "params": params}
    step_order.StepOrder._modules_in_reach = counting
    try:
        with Watch(namespace=namespace, warn=False) as report:
            model.eval()
            opts = [torch.optim.SGD([p], lr=1e-2) for p in params]
            opts.append(torch.optim.SGD(model.parameters(), lr=1e-2))
            namespace["opts"] = opts
            for _ in range(2):
                for o in opts:
                    o.zero_grad()
                (torch.stack(params).square().sum() + model(torch.ones(2, 4)).sum()).backward()
                for o in opts:
                    o.step()
    finally:
        step_order.StepOrder._modules_in_reach = modules_in_reach
    return walks[0], [d.code for d in report if d.code == "GW115"]


def test_the_eval_mode_check_walks_the_modules_once_per_iteration_whatever_the_optimizers():
    # every optimizer's first step is checked; one walk serves all of them (was: one per optimizer)
    assert _eval_mode_walks(3) == _eval_mode_walks(300) == (1, ["GW115"])


def _python_calls_through_traced_layers(layers: int, other_parameters: int) -> int:
    """Python function calls while the first traced forward runs ``layers`` linear layers (one
    op each), with ``other_parameters`` more parameter tensors in the optimizer and namespace."""
    import torch

    from gradwatch.session import Watch

    torch.manual_seed(0)
    model = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(layers))
    others = [torch.nn.Parameter(torch.randn(4)) for _ in range(other_parameters)]
    opt = torch.optim.SGD([*model.parameters(), *others], lr=0.1)
    x = torch.randn(8, 4)
    with Watch(namespace={"model": model, "opt": opt, "x": x, "others": others}, warn=False) as report:
        # traced: every op recorded
        calls, out = _python_calls(lambda: torch.stack([layer(x) for layer in model]).mean())
        (out + torch.stack(others).sum()).backward()  # every parameter trains: nothing to report
        opt.step()
    assert report.codes == []
    return calls


def test_a_traced_op_costs_the_same_python_calls_whatever_the_parameter_count():
    _python_calls_through_traced_layers(2, 2)  # first-use work (gradient probes) out of the counts
    per_op = {n: (_python_calls_through_traced_layers(20, n) - _python_calls_through_traced_layers(10, n)) / 10
              for n in (10, 5_000)}
    assert per_op[10] == per_op[5_000]
    # a plain Linear call is 5 Python calls; tracing adds a bounded number per op (42 today; 73
    # before the tensor maps, nodes and the non-finite check were read inline, 89 before that)
    assert per_op[10] <= 45, per_op


def _norm_calls_and_rows(n_optimizers: int) -> tuple[int, list[list[float]]]:
    """`_foreach_norm` calls of the gradient statistics while ``n_optimizers`` one-tensor SGD
    optimizers take 3 steps (one loss over all), and the sampled norms of the first three
    (every step of every optimizer sampled: no turns taken, see `StepSchedule.thinned`)."""
    import torch

    from gradwatch.monitors import grad_stats
    from gradwatch.monitors.schedule import StepSchedule
    from gradwatch.session import Watch

    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4)) for _ in range(n_optimizers)]
    rows: list[list[float]] = []
    calls = [0]
    flush = grad_stats.GradStats._flush_short_series_together

    def keep_rows(self):  # (the cell's end: every sample is a row by now)
        rows.extend(torch.stack(self.series[key].rows).flatten().tolist() for key in (1, 2, 3))
        return flush(self)

    grad_stats.GradStats._flush_short_series_together = keep_rows
    try:
        with Watch(namespace={"params": params}, warn=False,
                   schedule=StepSchedule(checked_per_backward=n_optimizers)) as report:
            _train_one_tensor_optimizers(params, 3)
            calls[0] = session_stats().norm_calls
    finally:
        grad_stats.GradStats._flush_short_series_together = flush
    assert report.codes == []
    return calls[0], rows


def session_stats():
    from gradwatch import session as session_mod

    monitor = session_mod.current()._monitor
    assert monitor is not None
    return monitor.stats


def test_gradient_norms_of_many_small_optimizers_are_reduced_together():
    import torch

    few_calls, few_rows = _norm_calls_and_rows(3)
    many_calls, many_rows = _norm_calls_and_rows(300)
    # in the cell: the first optimizer's first step sampled alone, then one call per iteration
    # (the third iteration's samples are reduced at the cell's end); was one per optimizer and step
    assert few_calls == many_calls == 3
    # the same figures as sampled one by one: each step's norm of 2 * p (the loss's gradient)
    torch.manual_seed(0)
    first = [torch.nn.Parameter(torch.randn(4)) for _ in range(3)]
    expected = []
    for p in first:
        norms, value = [], p.detach().clone()
        for _ in range(3):
            norms.append(float((2 * value).norm()))
            value = value - 1e-2 * 2 * value
        expected.append(norms)
    assert few_rows == many_rows
    assert [[round(v, 5) for v in row] for row in few_rows] == [[round(v, 5) for v in row] for row in expected]


def test_a_gradient_zeroed_in_place_after_the_step_is_not_sampled_as_zero():
    # two optimizers: their samples wait for the next zero_grad()/backward(); `p.grad.zero_()`
    # right after the step changes the gradient first: that sample is dropped, not read as 0
    import torch

    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4)) for _ in range(2)]
    sampled: list[float] = []
    from gradwatch.monitors import grad_stats
    from gradwatch.session import Watch

    flush = grad_stats.GradStats._flush_short_series_together

    def keep_rows(self):
        sampled.extend(v for key in (1, 2) for row in self.series[key].rows for v in row.tolist())
        return flush(self)

    grad_stats.GradStats._flush_short_series_together = keep_rows
    try:
        with Watch(namespace={"params": params}, warn=False):
            opts = [torch.optim.SGD([p], lr=1e-2) for p in params]
            for _ in range(3):
                torch.stack(params).square().sum().backward()
                for o in opts:
                    o.step()
                for p in params:
                    assert p.grad is not None
                    p.grad.zero_()
    finally:
        grad_stats.GradStats._flush_short_series_together = flush
    # each optimizer loses its first deferred sample (3 steps: 2 rows each), then samples at once
    assert len(sampled) == 4 and 0.0 not in sampled


# --- traced backward: each graph walked once, whatever the analyses --------------------------------
def _graph_walks_in_traced_backwards(layers: int) -> tuple[int, int, int, list[str]]:
    """(autograd graph walks, provenance ancestry walks, checkpoint lookups, codes) while two
    traced iterations of ``layers`` linear layers side by side run."""
    import torch

    from gradwatch.session import Watch
    from gradwatch.trace import flow

    counts = {"autograd_leaves": 0, "_ancestry": 0, "checkpointed_parameters": 0}
    originals = {name: getattr(flow, name) for name in counts}

    def counting(name):
        def call(*args, **kwargs):
            counts[name] += 1
            return originals[name](*args, **kwargs)
        return call

    torch.manual_seed(0)
    model = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(layers))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 4), torch.randn(8, 4)
    for name in counts:
        setattr(flow, name, counting(name))
    try:
        with Watch(namespace={"model": model, "opt": opt, "x": x, "y": y}, warn=False, trace_steps=2) as report:
            for _ in range(2):
                opt.zero_grad()
                torch.nn.functional.mse_loss(torch.stack([layer(x) for layer in model]).mean(0), y).backward()
                opt.step()
    finally:
        for name, original in originals.items():
            setattr(flow, name, original)
    return counts["autograd_leaves"], counts["_ancestry"], counts["checkpointed_parameters"], report.codes


def test_a_traced_backward_walks_each_graph_once_whatever_the_parameter_count():
    # one walk of autograd's graph and one of the provenance graph per traced backward (the
    # optimizers it feeds, the flow and the data share them); no checkpoint lookup per node
    assert _graph_walks_in_traced_backwards(5) == _graph_walks_in_traced_backwards(500) == (2, 2, 0, [])


# --- naming: a model's parameters are named once per cell, not at every moment that asks -----------
def _names_made_in_a_watched_cell(layers: int, frozen: bool = False) -> tuple[int, int, list[str]]:
    """(names the notebook index made while a watched 4-step loop ran, names one reading of
    the model makes, the report's codes) for a model of ``layers`` Linear layers side by side;
    ``frozen``: its first layer's weight frozen in the optimizer (GW008 names it)."""
    import torch

    from gradwatch.locate.naming import _entry
    from gradwatch.session import Watch

    ns: dict = {}
    exec("import torch\nfrom torch import nn\n"
         "class Wide(nn.Module):\n"
         "    def __init__(self, n):\n"
         "        super().__init__()\n"
         "        self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(n))\n"
         "    def forward(self, x):\n"
         "        return torch.stack([layer(x) for layer in self.layers]).mean(0)\n"
         f"model = Wide({layers})\n"
         + ("model.layers[0].weight.requires_grad_(False)\n" if frozen else "")
         + "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
         "x, y = torch.randn(8, 4), torch.randn(8, 4)\n", ns)
    session = Watch(namespace=ns, warn=False)
    with session as report:
        exec(_LOOP, ns)
    one_reading = _entry("model", ns["model"], torch)
    assert one_reading is not None
    return session._ns_index.objects_named, len(one_reading[0][1]), report.codes


def test_a_clean_cell_names_none_of_a_models_parameters():
    made, one_reading, codes = _names_made_in_a_watched_cell(300)
    assert codes == []
    assert one_reading == 1 + 1 + 300 + 600  # the model, its ModuleList, the layers, their parameters
    # no diagnostic mentions a parameter: the model is never read; only `opt` and the `loss`
    # tensors bound at each step are named
    assert made <= 10


def test_a_models_parameters_are_named_once_per_cell_when_a_diagnostic_needs_one():
    made, one_reading, codes = _names_made_in_a_watched_cell(300, frozen=True)
    assert "GW008" in codes
    # the model read once (then found unchanged at each moment that asks for names), besides
    # `opt` and the `loss` tensors bound at each step (one name each)
    assert one_reading < made <= one_reading + 10


_WIDE = ("import torch\nfrom torch import nn\n"
         "class Wide(nn.Module):\n"
         "    def __init__(self, n):\n"
         "        super().__init__()\n"
         "        self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(n))\n"
         "    def forward(self, x):\n"
         "        return torch.stack([layer(x) for layer in self.layers]).mean(0)\n")


def _wide_model_cell(loop: str, layers: int = 50):
    """(the session, the namespace) after a watched loop over ``layers`` Linear layers."""
    import torch  # noqa: F401  (skips with the rest of the suite without torch)

    from gradwatch.session import Watch

    ns: dict = {}
    exec(_WIDE + f"model = Wide({layers})\nopt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
         "x, y = torch.randn(8, 4), torch.randn(8, 4)\n", ns)
    session = Watch(namespace=ns, warn=False)
    ns["_index"] = session._ns_index
    with session:
        exec(compile(loop, "notebook_cell.py", "exec"), ns)
    return session, ns


def test_a_clean_loops_traced_steps_name_no_parameter_and_its_flows_are_never_named():
    session, ns = _wide_model_cell("""
for i in range(4):
    opt.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    if i == 1:
        named_while_traced = _index.objects_named
""")
    assert session.report.codes == []
    assert ns["named_while_traced"] <= 4  # x, y, loss: the variables, not the model's 100 tensors
    flows = [event.flow for event in session.events.backwards if event.flow is not None]
    assert len(flows) == 2 and all(flow.loss_name == "loss" for flow in flows)
    # no finding is compared with the names of what they reach: none are worked out, after the
    # cell either (the next test has one)
    assert [flow.reached for flow in flows] == [[], []] and session._unnamed_flows == []


def test_a_flows_reached_trainables_are_named_when_a_finding_is_compared_with_them():
    # a parameter found without a gradient later: its name is compared with the reached ones,
    # so they are named then, by the names they have then (`model` is rebound after the loop:
    # named after the cell, they would be the optimizer's `opt.param_groups[0]['params'][0]`)
    session, _ = _wide_model_cell("""
extra = torch.zeros(3, requires_grad=True)
for i in range(6):
    opt.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    if i == 2:
        opt.add_param_group({"params": [extra]})
model = Wide(50)
""")
    flows = [event.flow for event in session.events.backwards if event.flow is not None]
    assert len(flows) >= 2 and session._unnamed_flows == []
    assert flows[0].reached[:2] == ["model.layers.0.weight", "model.layers.0.bias"]
    assert len(flows[0].reached) == 100


def test_a_flow_in_a_function_names_its_reached_trainables_at_once():
    # the function's own model: named by its locals, gone (and nameless) once it returns
    session, _ = _wide_model_cell("""
def train():
    net = Wide(20)
    sgd = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(3):
        sgd.zero_grad()
        loss = nn.functional.mse_loss(net(x), y)
        loss.backward()
        sgd.step()
train()
""")
    flows = [event.flow for event in session.events.backwards if event.flow is not None]
    assert len(flows) == 2 and all(flow.reached[:2] == ["net.layers.0.weight", "net.layers.0.bias"]
                                   for flow in flows)


def test_a_module_changed_in_place_is_read_again():
    import torch
    from torch import nn

    from gradwatch.locate import NamespaceIndex, Namer

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
            self.hids: list = []  # not registered: named through the plain list

    model = Net()
    ns = {"model": model, "n": 1}
    index = NamespaceIndex(ns)

    def name(obj) -> str | None:
        found = Namer(ns, index=index).name(obj)
        assert found == Namer(ns).name(obj)
        return found

    assert name(model.layers[1].weight) == "model.layers.1.weight"
    read = index.entries_read
    assert name(model.layers[1].bias) == "model.layers.1.bias" and index.entries_read == read + 1
    model.layers[1] = nn.Linear(2, 2)  # a layer replaced
    assert name(model.layers[1].weight) == "model.layers.1.weight"
    model.hids.append(nn.Linear(2, 2))  # a list attribute grows
    assert name(model.hids[0].bias) == "model.hids[0].bias"
    model.layers[0].weight = nn.Parameter(torch.ones(2, 2))  # a parameter replaced
    assert name(model.layers[0].weight) == "model.layers.0.weight"
    model.layers[0].scale = torch.ones(1)  # a plain tensor attribute added
    assert name(model.layers[0].scale) == "model.layers.0.scale"
    model.layers[0].scale = torch.zeros(1)  # and rebound
    assert name(model.layers[0].scale) == "model.layers.0.scale"
    named = index.objects_named
    assert name(model) == "model" and index.objects_named == named  # unchanged since: not read again


def test_a_call_with_thousands_of_tensors_is_not_probed(monkeypatch):
    # the gradient probe re-runs an op on random inputs: for `torch.stack` of every layer's
    # output it would make two random tensors per layer (~0.3 s at 5,000 layers); such a call
    # is left unjudged, as one too big to probe is
    import torch

    from gradwatch.session import Watch
    from gradwatch.trace import grad_probe

    monkeypatch.setattr(grad_probe, "_verdicts", {})
    probed: list[int] = []  # tensor arguments of each probed call
    zero_at_scale = grad_probe._zero_at_scale

    def counting(func, args, kwargs, scale):
        probed.append(sum(len(a) if isinstance(a, (list, tuple)) else 1 for a in args))
        return zero_at_scale(func, args, kwargs, scale)

    monkeypatch.setattr(grad_probe, "_zero_at_scale", counting)
    torch.manual_seed(0)
    model = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(200))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 4)
    with Watch(namespace={"model": model, "opt": opt, "x": x}, warn=False) as report:
        torch.stack([layer(x) for layer in model]).round().mean().backward()
        opt.step()
    # linear (input, weight, bias) and the mean are probed; the stack of 200 is not; the
    # rounding still is, and still cuts every layer off
    assert 0 < max(probed) <= 3, probed
    assert report.codes == ["GW003"]


def _missing_checks(n_optimizers: int, iterations: int, monkeypatch) -> tuple[list[tuple[int, int]], list[str]]:
    """(backward calls so far, optimizer key) of each missing-gradient check while
    ``n_optimizers`` one-tensor SGD optimizers step after one loss, and the report's codes."""
    import torch

    from gradwatch.monitors.schedule import StepSchedule
    from gradwatch.session import Watch

    checked: list[tuple[int, int]] = []
    check = Watch._check_missing

    def spy(self, opt, record, since):
        checked.append((self.events.n_backward, record.key))
        return check(self, opt, record, since)

    monkeypatch.setattr(Watch, "_check_missing", spy)
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4)) for _ in range(n_optimizers)]
    # (every one of the first 32 steps would be checked: the turns show in that window)
    with Watch(namespace={}, warn=False, trace_steps=0, schedule=StepSchedule(missing_check_all=32)) as report:
        _train_one_tensor_optimizers(params, iterations)
    return checked, report.codes


@pytest.mark.slow  # 18,000 steps (~9 s): the full run and CI
def test_many_optimizers_stepping_together_take_turns_for_the_sampled_checks(monkeypatch):
    import collections

    # a few optimizers: each one's every step is checked
    checked, codes = _missing_checks(10, 3, monkeypatch)
    assert collections.Counter(n for n, _ in checked) == {1: 10, 2: 10, 3: 10} and codes == []
    # 1,000 stepping after each backward(): past the first iteration, 64 checked steps per
    # iteration at most (not 1,000), and every optimizer has its turn within 16 iterations
    checked, codes = _missing_checks(1_000, 18, monkeypatch)
    per_iteration = collections.Counter(n for n, _ in checked)
    assert max(per_iteration[n] for n in range(2, 19)) <= 64, per_iteration
    assert {key for n, key in checked if 2 <= n <= 17} == set(range(1, 1_001))
    assert codes == []


def test_the_graph_walk_keeps_no_node_type_of_the_users():
    # node kinds are learnt once per type of torch's own nodes; a custom Function's node type is
    # made from the user's class (whose methods hold the notebook's globals): not kept
    import torch

    from gradwatch.session import Watch
    from gradwatch.trace import flow

    class Double(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            return grad * 2

    w = torch.ones(3, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    with Watch(namespace={"w": w, "opt": opt}, warn=False):
        Double.apply(w).sum().backward()  # traced: the walk meets the Function's node
        opt.step()
    assert w.grad is not None and w.grad.tolist() == [2.0, 2.0, 2.0]
    assert Double._backward_cls not in flow._NODE_KINDS  # pyright: ignore[reportAttributeAccessIssue]
    assert any(kind.__name__ == "AccumulateGrad" for kind in flow._NODE_KINDS)


def test_a_modules_structure_does_not_list_a_long_list_of_the_users():
    from torch import nn

    from gradwatch.locate.naming import _module_structure, _Same

    def size(structure) -> int:
        return sum(len(part.objects) if isinstance(part, _Same) else len(part) for part in structure)

    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(300)])
    model.losses = [0.5] * 300
    listed = size(_module_structure(model))
    model.losses = [0.5] * 100_000  # (a list `Namer._add_contained` does not look into either)
    structure = _module_structure(model)
    assert size(structure) == listed < 20_000  # the 300 submodules' parts; the losses by their count only
    model.losses.append(0.25)
    assert _module_structure(model) != structure
    model.losses.pop()
    assert _module_structure(model) == structure


def test_a_modules_structure_compares_what_it_holds_by_identity():
    import torch
    from torch import nn

    from gradwatch.locate.naming import _module_structure

    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[0].mask = torch.ones(3)
    model[1].hids = [nn.Linear(1, 1)]
    structure = _module_structure(model)
    assert _module_structure(model) == structure
    model[0].mask = torch.ones(3)  # an equal tensor, another object (no element-wise __eq__ called)
    assert _module_structure(model) != structure
    structure = _module_structure(model)
    model[0].weight, model[0].bias = model[0].bias, model[0].weight  # swapped in the registry
    assert _module_structure(model) != structure
    structure = _module_structure(model)
    model[1].hids[0] = nn.Linear(1, 1)  # an item of a plain list replaced
    assert _module_structure(model) != structure


def _python_calls_of_many_optimizers(n: int, watch_options: dict | None) -> int:
    """Python calls while ``n`` one-tensor SGD optimizers are built and take two traced steps
    (the 1,000-optimizer row of benchmarks/scaling.py); ``watch_options`` None: unwatched."""
    import contextlib

    import torch

    from gradwatch.session import Watch

    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4)) for _ in range(n)]

    watch = contextlib.nullcontext() if watch_options is None else \
        Watch(namespace={"params": params}, warn=False, **watch_options)
    with watch as report:
        calls, _ = _python_calls(lambda: _train_one_tensor_optimizers(params, 2))
    assert report is None or report.codes == []
    return calls


def test_an_optimizer_adds_the_same_few_python_calls_whatever_their_number():
    _python_calls_of_many_optimizers(2, {})  # first-use work out of the counts
    sizes = (70, 140, 210)  # (past 64 stepping per backward: they take turns for the sampled checks)
    plain = {n: _python_calls_of_many_optimizers(n, None) for n in sizes}

    def per_optimizer(options: dict) -> list[float]:
        added = {n: _python_calls_of_many_optimizers(n, options) - plain[n] for n in sizes}
        return [(added[b] - added[a]) / (b - a) for a, b in zip(sizes, sizes[1:], strict=False)]

    session_only = per_optimizer({"per_step_monitors": False})
    # linear in the optimizers (up to which of them have their turn for a check)
    assert abs(session_only[0] - session_only[1]) <= 1, session_only
    # built, zeroed twice, stepped twice, all while tracing: 62 today (68 while garbage
    # collections inside the count ran weakref callbacks); 91 when each traced
    # backward named every optimizer's parameters through four calls per optimizer (and three
    # per name asked), and each optimizer built went through the guard and a look at its
    # class's step(); 137 when each optimizer's parameters were named and their facts made as
    # it was built, its tensor ids hashed per traced backward, and the tracing mode lifted
    # through a context object per call
    assert session_only[0] <= 70, session_only
    # with the training monitor's checks too: not growing either
    with_monitors = per_optimizer({})
    assert with_monitors[1] <= with_monitors[0] + 1, with_monitors


def test_a_step_hook_walks_to_the_users_frame_once_for_all_the_monitors_parts(monkeypatch):
    # an optimizer's first step asks for the user's frame in several parts of the training
    # monitor (the step's position, the eval-mode check, the loop's local names): one walk per
    # hook call serves them all, and no frame is kept after the call
    import torch

    from gradwatch import session as session_mod
    from gradwatch.locate.source_map import SourceMap
    from gradwatch.monitors import training
    from gradwatch.session import Watch

    walks = [0]
    walk = SourceMap.user_frame

    def counting(self, frame):
        walks[0] += 1
        return walk(self, frame)

    monkeypatch.setattr(SourceMap, "user_frame", counting)
    memos = []

    def run(n: int) -> int:
        params = [torch.nn.Parameter(torch.randn(4)) for _ in range(n)]
        walks[0] = 0
        with Watch(namespace={"params": params}, warn=False) as report:
            _train_one_tensor_optimizers(params, 2)
            memos.append(session_mod.current()._monitor._frame_memo)
        assert report.codes == []
        return walks[0]

    per_optimizer = (run(40) - run(20)) / 20
    # built (1), first zero_grad() (1), first step() (one, for the session's traced step position
    # and the monitor's parts: 1), second step() (1): 4, where each part walked on its own: 7
    assert per_optimizer == 4, per_optimizer
    assert memos == [training._NO_MEMO] * 2


def test_a_traced_step_runs_without_the_tracing_mode_from_its_start(monkeypatch):
    # torch's profiling marks around every step() come before the pre-step hooks: with the
    # tracing mode on the stack they cost more than a small plain step (1,000 optimizers)
    import torch

    from gradwatch.session import Watch
    from gradwatch.trace.provenance import ProvenanceMode

    seen: list[str] = []
    torch_function = ProvenanceMode.__torch_function__

    def counting(self, func, types, args=(), kwargs=None):
        seen.append(getattr(func, "__name__", str(func)))
        return torch_function(self, func, types, args, kwargs)

    monkeypatch.setattr(ProvenanceMode, "__torch_function__", counting)
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.25)
    own_step = torch.optim.SGD.step
    with Watch(namespace={"w": w, "opt": opt}, warn=False, trace_steps=2) as report:
        for i in range(3):
            opt.zero_grad()
            (w * 2).sum().backward()
            seen.clear()
            patched_while_traced = torch.optim.SGD.step is not own_step
            opt.step()
            assert seen == [], (i, seen)  # nothing of step() reaches the mode, its marks neither
            # patched while tracing only (not tracing: torch's own step(), no call more per step)
            assert patched_while_traced == (i == 0), i
    assert torch.optim.SGD.step is own_step and report.codes == []
    assert w.detach().tolist() == [-0.5, -0.5, -0.5]


def test_many_small_cpu_gradients_are_normed_by_shape_group_with_the_same_norms():
    """A sampled step of a model of many small CPU tensors: one kernel per shape, not one per
    tensor (`_foreach_norm` on the CPU loops over its tensors: 10,000 small gradients cost more
    than the step), and the same norms in parameter order: zeros, NaN and Inf included."""
    import torch

    from gradwatch.monitors import grad_stats
    from gradwatch.session import Watch

    torch.manual_seed(0)
    layers = torch.nn.ModuleList([torch.nn.Linear(8, 8) for _ in range(300)] + [torch.nn.Linear(80, 80)])
    params = list(layers.parameters())
    rows: list[torch.Tensor] = []
    foreach_widths: list[int] = []
    add_row, foreach_norm = grad_stats.GradStats._add_row, torch._foreach_norm

    def keep_row(self, s, row, step, cost):
        rows.append(row.clone())
        return add_row(self, s, row, step, cost)

    def counting_foreach_norm(tensors, *args, **kwargs):
        foreach_widths.append(len(tensors))
        return foreach_norm(tensors, *args, **kwargs)

    grad_stats.GradStats._add_row = keep_row
    torch._foreach_norm = counting_foreach_norm
    try:
        with Watch(namespace={"layers": layers}, warn=False, trace_steps=0):
            opt = torch.optim.SGD(params, lr=0.0)
            opt.zero_grad()
            sum(layer(torch.ones(1, layer.in_features)).sum() for layer in layers).backward()
            with torch.no_grad():
                params[2].grad.zero_()
                params[4].grad[0, 0] = float("nan")
                params[-1].grad[0] = float("inf")
            expected = torch.stack(foreach_norm([p.grad for p in params], 2, dtype=torch.float32))
            opt.step()
    finally:
        grad_stats.GradStats._add_row = add_row
        torch._foreach_norm = foreach_norm
    assert len(rows) == 1 and rows[0].shape == (602,)
    assert torch.allclose(rows[0], expected, equal_nan=True)
    assert rows[0][2].item() == 0.0 and rows[0][4].isnan() and rows[0][-1].isinf()
    # the two tensors of the 80x80 layer (above the size stacked, or alone in their shape) only
    assert foreach_widths == [2]


def test_a_second_cells_traced_ops_compile_no_call_site_again(monkeypatch):
    """Each traced op is called through a one-line function compiled at its caller's line (so
    that warnings keep their place); the compiled code is kept across cells, the function (it
    holds the caller's globals) is not."""
    import torch

    from gradwatch.session import Watch
    from gradwatch.trace import provenance

    compiled = []
    compile_ = builtins.compile

    def counting_compile(source, filename, *args, **kwargs):
        if isinstance(source, str) and source.endswith("func(*args, **kwargs)"):
            compiled.append(filename)
        return compile_(source, filename, *args, **kwargs)

    monkeypatch.setattr(builtins, "compile", counting_compile)
    monkeypatch.setattr(provenance, "_CALL_CODES", {})  # (as in a fresh kernel)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x = torch.randn(4, 3)
    per_cell = []
    for _ in range(2):
        before = len(compiled)
        with Watch(namespace={"model": model}, warn=False):
            torch.nn.functional.mse_loss(model(x), torch.zeros(4, 1)).backward()
        per_cell.append(len(compiled) - before)
        assert provenance._CALLERS == {}  # (the functions, with the callers' globals, are gone)
    assert per_cell[0] >= 2 and per_cell[1] == 0, per_cell


def test_the_end_of_a_cell_names_the_optimizers_parameters_once(monkeypatch, tmp_path):
    # after the user's code, the monitor's measurements and the traced flows' reached tensors
    # are named only when a diagnostic needs a name: in a clean cell, none of the parameters of
    # 100 optimizers is named (before names on demand: once; before the shared namer: twice);
    # the one namer of the cell's end is gone with the cell
    import traceback

    import torch

    from gradwatch import session as session_mod
    from gradwatch.locate import naming

    added_at_exit: list[int] = []
    add_pending = naming.Namer._add_pending

    def counting(self):
        if any(f.name == "__exit__" for f in traceback.extract_stack()):
            added_at_exit.append(len(self._pending))
        return add_pending(self)

    monkeypatch.setattr(naming.Namer, "_add_pending", counting)
    ns = {"torch": torch, "params": [torch.nn.Parameter(torch.randn(4)) for _ in range(100)]}
    code = """
opts = [torch.optim.SGD([p], lr=1e-2) for p in params]
for _ in range(2):
    for o in opts:
        o.zero_grad()
    torch.stack(params).square().sum().backward()
    for o in opts:
        o.step()
"""
    cell = tmp_path / "cell.py"
    cell.write_text(code)
    watch = session_mod.Watch(namespace=ns, warn=False)
    with watch as report:
        exec(compile(code, str(cell), "exec"), ns)  # (the notebook's level: flows named after the cell)
    assert report.codes == []
    assert added_at_exit == [], added_at_exit
    assert getattr(watch, "_final_namer", None) is None
    assert watch._namer() is not watch._namer()  # (after the cell: none kept)


def _sampled_rows_of_200_optimizers(monkeypatch, **options) -> tuple[list[int], list[int], int, bool]:
    """200 one-tensor optimizers, 2 iterations: the keys sampled at their first and second
    step, the series made, and whether optimizer 1 (the first to step) has rows."""
    import torch

    from gradwatch.monitors import grad_stats
    from gradwatch.session import Watch

    rows: dict[int, list[int]] = {}
    made: list[int] = []
    flush = grad_stats.GradStats._flush_short_series_together

    def keep_rows(self):  # (the cell's end: every sample is a row by now)
        rows.update({key: list(s.row_steps) for key, s in self.series.items() if s.row_steps})
        made.append(len(self.series))
        return flush(self)

    monkeypatch.setattr(grad_stats.GradStats, "_flush_short_series_together", keep_rows)
    params = [torch.nn.Parameter(torch.randn(4)) for _ in range(200)]
    with Watch(namespace={"params": params}, warn=False, **options) as report:
        _train_one_tensor_optimizers(params, 2)
    assert report.codes == []
    first = sorted(key for key, steps in rows.items() if 1 in steps)
    second = sorted(key for key, steps in rows.items() if 2 in steps)
    assert len(made) == 1
    return first, second, made[0], 1 in rows


def test_the_first_iteration_of_many_optimizers_samples_as_many_as_later_ones(monkeypatch):
    # 200 one-tensor optimizers: the traced first backward() reaches all of them, so they take
    # turns from the first step after it (ceil(200 / 64): one in 4 per iteration), not only once
    # the count of optimizers that stepped says so
    first, second, made, first_has_rows = _sampled_rows_of_200_optimizers(monkeypatch)
    # (before: the first 65 of the first iteration's, which sampled 119 and dropped the rest)
    assert first == [key for key in range(1, 201) if (key + 1) % 4 == 0], len(first)
    assert second == [key for key in range(1, 201) if (key + 2) % 4 == 0]
    # a series for each optimizer sampled, 50 per iteration, and for optimizer 1, the first to
    # step after each backward() (it keeps the losses); none for the others: 101 of 200 (148
    # before, the dropped samples' included; all 200 before that)
    assert made == 101 and not first_has_rows


def test_after_an_untraced_backward_many_optimizers_keep_the_first_64_samples(monkeypatch):
    # no backward() traced: nobody knows how many optimizers will step, so each one's step is
    # sampled until the count says to take turns; the samples beyond the 64 an iteration gets
    # are dropped (they cost the end of the cell most of its work)
    from gradwatch.monitors.schedule import StepSchedule

    first, second, made, _ = _sampled_rows_of_200_optimizers(
        monkeypatch, schedule=StepSchedule(trace_backward_calls=0))
    # the first optimizer's step, sampled at once (alone so far), and the first 64 of those deferred
    assert first == list(range(1, 66)), len(first)
    assert second == [key for key in range(1, 201) if (key + 2) % 4 == 0]
    # a series for each optimizer sampled (119 in the first iteration, the dropped samples'
    # included; 29 more of the second's 50), none for the others: 148 of 200
    assert made == 148


def test_a_clean_flow_is_named_after_the_cell_when_another_flows_cut_is_compared_with_it():
    # a GAN's discriminator step cuts the generator off (`.detach()`, on purpose): the generator
    # step's clean flow, left unnamed, is named after the cell, and what it reaches tells GW002
    # that the cut tensors are trained by another backward()
    import torch  # noqa: F401

    from gradwatch.session import Watch

    ns: dict = {}
    exec("import torch\nfrom torch import nn\ng, d = nn.Linear(4, 4), nn.Linear(4, 1)\n"
         "og, od = torch.optim.SGD(g.parameters(), lr=0.1), torch.optim.SGD(d.parameters(), lr=0.1)\n"
         "x = torch.randn(8, 4)\n", ns)
    session = Watch(namespace=ns, warn=False)
    with session:
        exec(compile("""
for i in range(3):
    od.zero_grad()
    d(g(x).detach()).mean().backward()
    od.step()
    og.zero_grad()
    (-d(g(x)).mean()).backward()
    og.step()
""", "notebook_cell.py", "exec"), ns)
    assert session.report.codes == []
    flows = [event.flow for event in session.events.backwards if event.flow is not None]
    assert [bool(flow.cuts) for flow in flows] == [True, False]
    assert flows[1].reached == ["d.weight", "d.bias", "g.weight", "g.bias"]


def test_the_walk_to_the_users_frame_starts_at_the_call_of_zero_grad_and_step(monkeypatch):
    # a traced step's pre-hook and a first zero_grad()'s position walk up from the frame that
    # called the patched method (the patch's own wrapper), not from inside torch's step wrapper
    # and the monitor's parts: two frames each (5 and 6 before), the same frame found
    import torch

    from gradwatch.locate.source_map import SourceMap
    from gradwatch.session import Watch

    walks: list[tuple[int, str]] = []
    user_frame = SourceMap.user_frame

    def counting(self, frame):  # (the frames from where the walk starts to the one it finds)
        found, n = user_frame(self, frame), 1
        while frame is not None and frame is not found:
            frame, n = frame.f_back, n + 1
        walks.append((n, found.f_code.co_name if found is not None else ""))
        return found

    monkeypatch.setattr(SourceMap, "user_frame", counting)
    params = [torch.nn.Parameter(torch.randn(4)) for _ in range(20)]
    seen: dict[str, list[tuple[int, str]]] = {}

    def loop():
        opts = [torch.optim.SGD([p], lr=1e-2) for p in params]
        walks.clear()
        for o in opts:
            o.zero_grad()
        seen["zero_grad"] = list(walks)
        torch.stack(params).square().sum().backward()
        walks.clear()
        for o in opts:
            o.step()
        seen["step"] = list(walks)

    with Watch(namespace={"params": params}, warn=False) as report:
        loop()
    assert report.codes == []
    assert seen["zero_grad"] == [(2, "loop")] * 20
    # (the first step also locates the traced forward's ops, from their own frames)
    assert seen["step"].count((2, "loop")) == 20 and {name for _, name in seen["step"]} == {"loop"}


def test_lazy_names_name_only_what_is_read_and_keep_no_tensor_once_sealed():
    import gc
    import weakref

    import torch

    from gradwatch.measurements import LazyNames

    tensors = [torch.zeros(1) for _ in range(3)]
    ids = [id(t) for t in tensors]
    asked: list[int] = []

    def name_of(t):
        asked.append(id(t))
        return f"w{ids.index(id(t))}"

    names = LazyNames(tensors, name_of)
    assert len(names) == 3 and asked == []
    assert names[1] == "w1" and names[-1] == "w2" and names[1] == "w1"
    assert len(asked) == 2  # each worked out once, the others never
    dead = weakref.ref(tensors[0])
    names.seal()
    del tensors
    gc.collect()
    assert dead() is None
    assert list(names) == ["param 0", "w1", "w2"] and names == ["param 0", "w1", "w2"]
