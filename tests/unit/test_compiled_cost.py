"""What gradwatch's torch.compile support costs where nothing is compiled (issue 12), counted
rather than timed: once dynamo is imported, every optimizer step and zero_grad() passes through
dynamo's eval-frame setter, which gradwatch wraps; and compiled steps are looked for at every
zero_grad()/backward() once compiled code ran. Plus the bookkeeping that takes the session's
optimizer hooks out of torch's hook dicts while dynamo runs frames."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import OrderedDict
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.slow  # dynamo compiles in fresh processes: many seconds of CPU; the full run and CI run them

from torch.utils.hooks import RemovableHandle  # noqa: E402

from gradwatch.install.compiled import _HooksAside  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

_SCENARIO = textwrap.dedent("""
    import json
    import torch, torch.nn as nn, torch.nn.functional as F
    import torch._dynamo  # (as `import transformers` does, or a torch.compile in an earlier cell)
    import torch._dynamo.eval_frame as eval_frame
    import gradwatch
    from gradwatch.install import compiled as compiled_module

    calls = dict(set_eval_frame=0, frame_walks=0, looks=0)

    def counting(name, fn):
        def counted(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return counted

    eval_frame._maybe_set_eval_frame = counting("set_eval_frame", eval_frame._maybe_set_eval_frame)
    compiled_module._dynamo_caller = counting("frame_walks", compiled_module._dynamo_caller)
    compiled_module.CompiledSteps._look = counting("looks", compiled_module.CompiledSteps._look)

    def plain_loop(steps):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(32, 16), torch.randint(0, 4, (32,))
        calls.update(set_eval_frame=0, frame_walks=0)
        with gradwatch.watch(warn=False, namespace=dict(model=model, opt=opt)) as report:
            for _ in range(steps):
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                opt.step()
        return dict(calls, codes=[d.code for d in report.diagnostics])

    def compiled_model(n_optimizers, steps):
        # a compiled model whose layers have one optimizer each: one compiled call per step
        torch._dynamo.reset()
        torch.manual_seed(0)
        model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(n_optimizers)])
        opts = [torch.optim.SGD(layer.parameters(), lr=0.01) for layer in model]
        compiled = torch.compile(model, backend="eager")
        x, y = torch.randn(16, 8), torch.randn(16, 8)
        looks = []
        with gradwatch.watch(warn=False, namespace=dict(model=model, opts=opts)) as report:
            for _ in range(steps):
                for opt in opts:
                    opt.zero_grad()
                F.mse_loss(compiled(x), y).backward()
                for opt in opts:
                    opt.step()
                looks.append(calls["looks"])
        return dict(looks_per_step=[b - a for a, b in zip(looks, looks[1:])],
                    codes=[d.code for d in report.diagnostics])

    print(json.dumps(dict(plain=plain_loop(50), one=compiled_model(1, 6), eight=compiled_model(8, 6))))
""")


@pytest.fixture(scope="module")
def counted() -> dict:
    done = subprocess.run([sys.executable, "-c", _SCENARIO], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_plain_steps_pay_no_frame_walk_for_the_dynamo_hook(counted: dict) -> None:
    plain = counted["plain"]
    # every step's disable wrapper clears the callback on entry and on exit: two calls a step,
    # each answered without looking at the calling frame
    assert plain["set_eval_frame"] == 2 * 50
    assert plain["frame_walks"] == 0
    assert plain["codes"] == []


def test_compiled_steps_are_looked_for_once_per_compiled_call(counted: dict) -> None:
    # each step: every optimizer once after the compiled call (at backward), and each again to
    # take its count after the step gradwatch saw; not every optimizer at every zero_grad()
    assert counted["one"]["looks_per_step"] == [2] * 5
    assert counted["eight"]["looks_per_step"] == [2 * 8] * 5
    assert counted["one"]["codes"] == counted["eight"]["codes"] == []


def _hook_dict() -> tuple[OrderedDict, dict[str, RemovableHandle]]:
    hooks: OrderedDict = OrderedDict()
    handles = {}
    for name in ("user_a", "ours", "user_b"):
        handles[name] = handle = RemovableHandle(hooks)
        hooks[handle.id] = name
    return hooks, handles


def test_hooks_taken_out_go_back_where_they_were() -> None:
    hooks, handles = _hook_dict()
    aside = _HooksAside(lambda: [handles["ours"]])
    aside.take_out()
    assert list(hooks.values()) == ["user_a", "user_b"]
    aside.take_out()  # again (a compiled region inside another): nothing more to take
    late = RemovableHandle(hooks)  # the user registers one while compiled code runs
    hooks[late.id] = "user_late"
    aside.put_back()
    assert list(hooks.values()) == ["user_a", "ours", "user_b", "user_late"]
    aside.put_back()  # (back already: nothing changes)
    assert list(hooks.values()) == ["user_a", "ours", "user_b", "user_late"]


def test_a_hook_removed_while_out_stays_out() -> None:
    hooks, handles = _hook_dict()
    live = [handles["ours"]]
    aside = _HooksAside(lambda: list(live))
    aside.take_out()
    handles["ours"].remove()  # the session drops it (its work is done, or the session ends)
    live.clear()
    aside.put_back()
    assert list(hooks.values()) == ["user_a", "user_b"]
