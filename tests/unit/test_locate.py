"""locate/: byte columns -> character columns, cell spans -> editor Locations, the cell
history (newest assignment first), enclosing `with` blocks, user names for tensors."""

from __future__ import annotations

import linecache
import types

import pytest

from gradwatch.locate import Namer, SourceMap, char_column


@pytest.mark.parametrize("line, byte_col, expected", [
    ("w = torch.randn(1)", 4, 4),
    ("w = torch.randn(1)", 0, 0),
    ("w = torch.randn(1)", -3, 0),
    ("w = torch.randn(1)", 99, 18),
    ("ŵ = torch.randn(1)", 5, 4),   # ŵ is 2 bytes
    ("重み = x", 9, 5),              # 3 bytes each
    ("a = '🙂'; b = t.detach()", 15, 12),  # 🙂 is 4 bytes
    ("重み", 4, 1),                  # inside a character: the characters before it
])
def test_char_column(line, byte_col, expected):
    assert char_column(line, byte_col) == expected


def _cell_map(editor: str, code: str | None = None, number: int = 7) -> SourceMap:
    sm = SourceMap(None)
    sm.register_cell(f"<cell-{number}>", number, editor, code if code is not None else "\n" + editor.split("\n", 1)[1])
    return sm


def test_span_to_location_counts_editor_lines_and_characters():
    sm = _cell_map("%%gradwatch\nx = 1\nŵ = torch.randn(1, 1)")
    loc = sm.location_of_span("<cell-7>", 3, 3, len("ŵ = ".encode()), len("ŵ = torch.randn(1, 1)".encode()))
    assert (loc.cell, loc.path, loc.line, loc.column, loc.end_line, loc.end_column) == (7, None, 3, 5, 3, 22)
    assert loc.source == "ŵ = torch.randn(1, 1)" and loc.text == "torch.randn(1, 1)"
    assert loc.describe() == "cell [7], line 3, col 5"


def test_span_outside_the_cell_is_none():
    sm = _cell_map("%%gradwatch\nx = 1")
    assert sm.location_of_span("<cell-7>", 5, 5, 0, 1) is None
    assert sm.location_of_span("<cell-7>", 0, 0, 0, 1) is None


def test_transformed_magic_line_flags_the_whole_editor_line():
    editor = "%%gradwatch\n%time y = f(x)\nz = 1"
    code = "\nget_ipython().run_line_magic('time', 'y = f(x)')\nz = 1"
    sm = _cell_map(editor, code)
    loc = sm.location_of_span("<cell-7>", 2, 2, 0, 10)
    assert (loc.line, loc.column, loc.end_column, loc.source) == (2, 1, len("%time y = f(x)") + 1, "%time y = f(x)")
    loc = sm.location_of_span("<cell-7>", 3, 3, 4, 5)
    assert (loc.line, loc.column, loc.end_column) == (3, 5, 6)


def test_multi_line_span():
    sm = _cell_map("%%gradwatch\nloss = f(\n    a, b)\n")
    loc = sm.location_of_span("<cell-7>", 2, 3, 7, 9)
    assert (loc.line, loc.column, loc.end_line, loc.end_column) == (2, 8, 3, 10)
    assert loc.text == "f("  # the rest of the first line


def test_find_assignment_in_the_current_cell():
    sm = _cell_map("%%gradwatch\nw = 1\nw, b = torch.zeros(1), torch.ones(2)\nn: int = 3\nw = torch.randn(2)\nprint(w)")
    w = sm.find_assignment("w")
    assert (w.line, w.column, w.end_column, w.text) == (5, 5, 19, "torch.randn(2)")
    b = sm.find_assignment("b")
    assert (b.line, b.text) == (3, "torch.ones(2)")
    assert sm.find_assignment("n").text == "3"
    assert sm.find_assignment("missing") is None


def _history_shell(cells: dict[int, str]):
    fmap = {}
    for number, src in cells.items():
        filename = f"/tmp/ipykernel_gw_test/{number}.py"
        linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
        fmap[filename] = number
    raw = [""] + [cells.get(n, "") for n in range(1, max(cells) + 1)]
    return types.SimpleNamespace(compile=types.SimpleNamespace(_filename_map=fmap),
                                 history_manager=types.SimpleNamespace(input_hist_raw=raw))


def test_find_assignment_newest_cell_first_even_after_earlier_lookups():
    shell = _history_shell({1: "net = Net()\nopt = SGD(net)", 2: "x = 1", 3: "net = Net()  # again", 4: "print(net)"})
    sm = SourceMap(shell)
    assert sm.find_assignment("opt").cell == 1  # caches every older cell on the way
    for _ in range(2):
        net = sm.find_assignment("net")
        assert (net.cell, net.line, net.column, net.source) == (3, 1, 7, "net = Net()  # again")
    assert [f.rsplit("/", 1)[1] for f, _ in sm.cell_sources()] == ["4.py", "3.py", "2.py", "1.py"]


def test_current_cell_comes_before_the_history():
    shell = _history_shell({1: "w = torch.zeros(1)", 2: "w = torch.ones(1)"})
    sm = SourceMap(shell)
    sm.register_cell("<current>", 3, "%%gradwatch\nw = torch.empty(1)", "\nw = torch.empty(1)")
    loc = sm.find_assignment("w")
    assert (loc.cell, loc.line, loc.text) == (3, 2, "torch.empty(1)")


def test_a_long_cell_that_cannot_assign_the_name_is_not_parsed():
    loop = "".join(f"z{i} = {i}\nopt.zero_grad()\nopt.step()\n" for i in range(400))  # > 10,000 characters
    shell = _history_shell({1: "opt = SGD(params)", 2: loop})
    sm = SourceMap(shell)
    loc = sm.find_assignment("opt")
    assert (loc.cell, loc.text) == (1, "SGD(params)")
    assert [f.rsplit("/", 1)[1] for f in sm._trees] == ["1.py"]  # the long cell was not parsed
    # a long cell that does assign it, over several lines (a bracketed target), is parsed
    shell = _history_shell({1: "opt = SGD(params)", 2: loop + "(sched,\n opt\n) = make()\n"})
    assert SourceMap(shell).find_assignment("opt").cell == 2

def test_enclosing_with_finds_the_innermost_no_grad():
    sm = _cell_map("%%gradwatch\nwith torch.no_grad():\n    with open('f') as fh:\n"
                   "        pred = model(x)\nloss = f(pred)")
    inner = sm.location_of_span("<cell-7>", 4, 4, 15, 23)
    ctx = sm.enclosing_with(inner, ("no_grad", "inference_mode"))
    assert (ctx.line, ctx.column, ctx.text) == (2, 6, "torch.no_grad()")
    outside = sm.location_of_span("<cell-7>", 5, 5, 7, 14)
    assert sm.enclosing_with(outside, ("no_grad",)) is None


def test_user_file_detection():
    sm = SourceMap(None)
    import torch
    assert sm.is_user_file(__file__) is True
    assert sm.is_user_file(torch.__file__) is False
    assert sm.is_user_file("<frozen importlib._bootstrap>") is False
    assert sm.is_user_file(linecache.__file__) is False


def test_namer_finds_qualified_names():
    import torch
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    ws = [torch.zeros(1), torch.ones(1)]
    params = {"a": torch.zeros(2)}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    namer = Namer({"model": model, "ws": ws, "params": params, "opt": opt, "_hidden": torch.zeros(1)})
    assert namer.name(model[2].weight) == "model.2.weight"
    assert namer.name(model[0]) == "model.0"
    assert namer.name(ws[1]) == "ws[1]"
    assert namer.name(params["a"]) == "params['a']"
    assert namer.name(opt) == "opt"
    assert namer.name(torch.zeros(1)) is None
    first = Namer({"local_w": ws[0]}, {"global_w": ws[0]})
    assert first.name(ws[0]) == "local_w"  # the first namespace (the frame's locals) wins



def test_namer_names_a_models_tensors_as_torch_does_the_first_name_winning():
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.bn = nn.BatchNorm1d(4)
            self.head = nn.Linear(4, 10)
            self.head.weight = self.emb.weight  # tied: named where torch lists it first
            self.seq = nn.Sequential(nn.Linear(4, 4), self.bn)  # shared: named once
            self.hids = [nn.Linear(2, 2)]  # a plain list: not registered
            self.mask = torch.ones(3)  # a plain tensor attribute
            self.register_buffer("empty", None)

    model = Net()
    namer = Namer({"model": model})
    expected = {id(p): f"model.{n}" for n, p in reversed(list(model.named_parameters()))}
    expected.update({id(b): f"model.{n}" for n, b in reversed(list(model.named_buffers()))})
    for t in [*model.parameters(), *model.buffers()]:
        assert namer.name(t) == expected[id(t)]
    assert namer.name(model.head.weight) == "model.emb.weight" and namer.name(model.bn) == "model.bn"
    assert namer.name(model.hids[0].bias) == "model.hids[0].bias"
    assert namer.unregistered_in(model.hids[0].bias) == "model.hids"
    assert namer.name(model.mask) == "model.mask"
    assert namer.user_attribute(model.head.bias) is None  # (torch's Linear, not the user's class)

# --- cost: once per cell, not once per tensor (issue 12) ----------------------------------------
def test_cell_history_is_parsed_once_per_cell_and_searches_answer_as_before(monkeypatch):
    from gradwatch.locate import source_map as locate

    sm = SourceMap(None)
    sm.register_cell("<cell-1>", 1, "model = Net()\nopt = SGD(model.parameters())",
                     "model = Net()\nopt = SGD(model.parameters())")
    body = "\n".join(f"z{i} = {i}" for i in range(200))
    sm.register_cell("<cell-2>", 2, "%%gradwatch\n" + body + "\nw, b = make()\nself.fc = Linear(2, 2)\n"
                     "with torch.no_grad():\n    y = w * 2\nfor i in range(3):\n    loss = f(w)",
                     "\n" + body + "\nw, b = make()\nself.fc = Linear(2, 2)\n"
                     "with torch.no_grad():\n    y = w * 2\nfor i in range(3):\n    loss = f(w)")
    parsed = []
    real_parse = locate._parse
    monkeypatch.setattr(locate, "_parse", lambda code: parsed.append(code) or real_parse(code))
    for _ in range(3):
        assert (sm.find_assignment("opt").cell, sm.find_assignment("opt").text) == (1, "SGD(model.parameters())")
        assert sm.find_assignment("b").text == "make()" and sm.find_assignment("z150").text == "150"
        assert sm.find_assignment("fc", attribute=True).text == "Linear(2, 2)"
        assert sm.find_assignment("nothing") is None
        assert sm.find_call({"SGD"}).text == "SGD(model.parameters())"
        inner = sm.find_assignment("y")
        assert sm.enclosing_with(inner, ["no_grad"]).text == "torch.no_grad()"
        assert sm.in_same_loop(sm.find_assignment("loss"), sm.find_assignment("loss"))
    assert len(parsed) == 2  # each cell once, however many searches
    sm.register_cell("<cell-3>", 3, "opt = Adam(p)", "opt = Adam(p)")  # a new cell: searched too
    assert sm.find_assignment("opt").text == "Adam(p)"


def test_namer_reads_each_namespace_once_and_only_when_a_name_is_asked():
    import torch
    from torch import nn

    class Counting(dict):
        reads = 0

        def items(self):
            Counting.reads += 1
            return super().items()

    model = nn.Linear(2, 2)
    ns = Counting({"n": 3, "s": "text", "f": len, "model": model, "w": torch.zeros(1), "_hidden": torch.ones(1)})
    namer = Namer(ns, ns, ns)  # a cell's frame: its locals and globals are the notebook's namespace
    opt = torch.optim.SGD([model.weight, torch.zeros(1, requires_grad=True)], lr=0.1)
    namer.add_optimizer(opt, "optimizer#1")
    assert Counting.reads == 0
    assert namer.name(model.weight) == "model.weight" and namer.name(ns["w"]) == "w"
    assert namer.name(ns["_hidden"]) is None
    assert namer.name(opt.param_groups[0]["params"][1]) == "optimizer#1.param_groups[0]['params'][1]"
    assert Counting.reads == 1


def test_namer_names_optimizers_parameters_only_when_a_tensor_is_not_found_otherwise():
    # the names of 1,000 optimizers asked after the cell name none of their parameters
    import torch
    from torch import nn

    params = [nn.Parameter(torch.ones(1)) for _ in range(3)]
    shared = nn.Parameter(torch.ones(1))
    opts = [torch.optim.SGD([p, shared], lr=0.1) for p in params]
    namer = Namer({"first": opts[0], "w": params[2]})
    namer.add_optimizers([(opt, f"optimizer#{key}") for key, opt in enumerate(opts, 1)])
    assert [namer.name(opt) for opt in opts] == ["first", None, None]
    assert len(namer._pending) == 3 and namer._by_id.keys() == {id(opts[0]), id(params[2])}
    assert namer.name(params[2]) == "w" and len(namer._pending) == 3  # (found in the namespace)
    # a tensor not found there: every optimizer's parameters named, in the order they were added
    assert namer.name(params[1]) == "optimizer#2.param_groups[0]['params'][0]" and namer._pending == []
    assert namer.name(shared) == "first.param_groups[0]['params'][1]"
    assert namer.name(params[0]) == "first.param_groups[0]['params'][0]" and namer.name(params[2]) == "w"
    assert namer.name(torch.ones(1)) is None


def test_the_index_reads_exactly_the_small_containers_that_hold_something_besides_numbers():
    import torch

    from gradwatch.locate.naming import _containers_to_read, _kinds, _plain_tensor_types

    _plain_tensor_types(torch)
    t = torch.ones(1)

    def read(values: list) -> set[int]:
        return _containers_to_read(values, _kinds(values))

    inert = [[1, 2], (3, "a"), {"k": 4.0}, [], {}, 5, "s"]
    assert read(inert) == set()  # (the usual case, found in one pass)
    assert read([*inert, [1, t], (t,), {"a": 1, "b": t}, [2] * 63 + [t], [2] * 64 + [t], {"m": object()}]) \
        == {7, 8, 9, 10, 12}  # not the list of 65 items, nor the numbers before them
    assert read([{"a": t}, [1, 2]]) == {0} and read([[1, 2], {"k": 1}, (1, t)]) == {2}
