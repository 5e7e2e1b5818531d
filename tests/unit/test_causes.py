"""Causes, not symptoms: each mechanism that moves a diagnostic to the line the user must edit,
on a small program in the shape real code has, run in-process through IPython's own cell
machinery (real cell numbers and lines). The real-kernel run of whole programs of this kind is
the real-bug corpus (``tests/real``, ``tests/kernel/test_real_corpus.py``)."""

from __future__ import annotations

import textwrap
import warnings

import pytest


def run(shell, *cells: str, error: type[BaseException] | None = None) -> list[tuple[str, int, int]]:
    """Run ``cells`` (the last one watched); (code, cell index from 0, line) of each warning or
    error, where line 1 of the watched cell is its ``%%gradwatch`` line."""
    import gradwatch

    shell.reset(new_session=False)
    counts = []
    for n, source in enumerate(cells):
        source = textwrap.dedent(source).strip("\n")
        if n == len(cells) - 1:
            source = "%%gradwatch\n" + source
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gradwatch._set_last_report(None)
            result = shell.run_cell(source, store_history=True)
        counts.append(result.execution_count)
        if n == len(cells) - 1:
            raised = result.error_in_exec
            assert (type(raised) if raised else None) is error, repr(raised)
    report = gradwatch.last_report()
    return [(d.code, counts.index(d.location.cell), d.location.line) for d in report
            if d.severity.value != "info" and d.location is not None]


SETUP = """
import torch
from torch import nn
import torch.nn.functional as F
torch.manual_seed(0)
"""


def test_a_parameter_rebound_under_no_grad_is_the_cause_of_its_none_grad(shell):
    found = run(shell, SETUP, """
        x, y = torch.randn(16, 3), torch.randn(16, 1)
        w = torch.randn(3, 1, requires_grad=True)
        for it in range(3):
            loss = ((x @ w - y) ** 2).mean()
            loss.backward()
            with torch.no_grad():
                w = w - 0.1 * w.grad
            w.grad.zero_()
        """, error=AttributeError)
    assert found == [("GW011", 1, 8)]


def test_a_grad_read_before_the_first_backward_is_its_own_cause(shell):
    found = run(shell, SETUP, """
        x, y = torch.randn(16, 3), torch.randn(16, 1)
        w = torch.randn(3, 1, requires_grad=True)
        for it in range(3):
            w.grad.data.zero_()
            loss = ((x @ w - y) ** 2).mean()
            loss.backward()
        """, error=AttributeError)
    assert found == [("GW011", 1, 5)]


def test_an_in_place_update_of_a_leaf_view(shell):
    found = run(shell, SETUP, """
        weights = torch.ones(4).requires_grad_()
        loss = (weights * 2).sum()
        loss.backward()
        weights[0] *= 1.5
        """, error=RuntimeError)
    assert found == [("GW012", 1, 5)]


def test_a_no_grad_block_up_the_call_stack_is_the_line_to_edit(shell):
    found = run(shell, SETUP + """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 1)

    def forward(self, x):
        return self.fc(x)


def predict(model, x):
    return model(x)
""", """
        model = Net()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(8, 3), torch.randn(8, 1)
        for epoch in range(2):
            with torch.no_grad():
                pred = predict(model, x)
            loss = F.mse_loss(pred, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        """, error=RuntimeError)
    assert found == [("GW002", 1, 6)]


def test_a_custom_autograd_function_is_no_cut(shell):
    # its forward runs under no_grad by design and its backward() gives the gradient: neither
    # a Function in the middle of the model (a straight-through rounding, a gradient reversal)
    # nor a loss written as a Function is a graph cut; a real no_grad forward still is
    functions = SETUP + """
class RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x * 4) / 4

    @staticmethod
    def backward(ctx, grad):
        return grad


class MSE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pred, y):
        ctx.save_for_backward(pred, y)
        return ((pred - y) ** 2).mean()

    @staticmethod
    def backward(ctx, grad):
        pred, y = ctx.saved_tensors
        return grad * 2 * (pred - y) / pred.numel(), None
"""
    clean = """
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(8, 3), torch.randn(8, 1)
        for epoch in range(3):
            opt.zero_grad()
            loss = MSE.apply(RoundSTE.apply(model(x)), y)
            loss.backward()
            opt.step()
        """
    assert run(shell, functions, clean) == []
    cut = clean.replace("loss = MSE.apply(RoundSTE.apply(model(x)), y)",
                        "with torch.no_grad():\n                out = model(x)\n"
                        "            loss = MSE.apply(RoundSTE.apply(out), y).requires_grad_()")
    assert [code for code, _, _ in run(shell, functions, cut)] == ["GW002"]


def test_a_closure_called_inside_a_no_grad_step_is_the_line_to_edit(shell):
    found = run(shell, SETUP + """
class PlainSGD(torch.optim.Optimizer):
    def __init__(self, params, lr=0.1):
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(p.grad, alpha=-group["lr"])
        return loss
""", """
        model = nn.Linear(3, 1)
        opt = PlainSGD(model.parameters())
        x, y = torch.randn(8, 3), torch.randn(8, 1)

        def closure():
            opt.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            return loss

        opt.step(closure)
        """, error=RuntimeError)
    assert found == [("GW002", 0, 12)]


def test_a_tensor_rebuilt_from_tensors_is_a_cut(shell):
    found = run(shell, SETUP, """
        theta = torch.tensor([0.3, 0.6], requires_grad=True)
        opt = torch.optim.SGD([theta], lr=0.1)

        def features():
            a, b = torch.cos(theta[0]), torch.sin(theta[1])
            return torch.tensor([[a, b], [b, a]])

        for step in range(2):
            loss = features().sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        """, error=RuntimeError)
    assert found == [("GW002", 1, 7)]


def test_parameters_turned_into_python_numbers_are_a_cut(shell):
    found = run(shell, SETUP + """
class Oscillator(nn.Module):
    def __init__(self):
        super().__init__()
        self.coeffs = nn.ParameterList(nn.Parameter(torch.zeros(1)) for _ in range(3))

    def forward(self, states):
        return states @ torch.Tensor([p for p in self.coeffs]).unsqueeze(1)
""", """
        model = Oscillator()
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        states, accels = torch.randn(20, 3), torch.randn(20, 1)
        for epoch in range(3):
            opt.zero_grad()
            loss = F.mse_loss(model(states), accels)
            loss.backward()
            opt.step()
        """, error=RuntimeError)
    assert found == [("GW002", 0, 12)]


def test_a_loss_term_made_constant_by_a_detach_in_a_helper(shell):
    found = run(shell, SETUP + """
def smoothness(weights):
    weights = weights.softmax(dim=1)
    weights = weights.detach()
    return (weights[:, 1:] - weights[:, :-1]).pow(2).mean()
""", """
        net = nn.Linear(4, 6)
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        x, y = torch.randn(32, 4), torch.randn(32, 6)
        for epoch in range(3):
            out = net(x)
            loss = F.mse_loss(out, y) + 0.5 * smoothness(out)
            opt.zero_grad()
            loss.backward()
            opt.step()
        """)
    assert found == [("GW002", 0, 8)]


GAN = SETUP + """
G = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
D = nn.Sequential(nn.Linear(2, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
opt_g = torch.optim.Adam(G.parameters(), lr=2e-4)
opt_d = torch.optim.Adam(D.parameters(), lr=2e-4)
"""


@pytest.mark.parametrize("g_input, expected", [("fake", []), ("fake.detach()", [("GW002", 1, 13)])])
def test_gan_d_steps_detach_on_purpose_and_a_g_step_detach_is_found(shell, g_input, expected):
    found = run(shell, GAN, f"""
        for it in range(3):
            for d_step in range(3):
                real = torch.randn(16, 2) + 1.0
                fake = G(torch.randn(16, 4))
                opt_d.zero_grad()
                d_loss = F.softplus(-D(real)).mean() + F.softplus(D(fake.detach())).mean()
                d_loss.backward()
                opt_d.step()

            opt_g.zero_grad()
            fake = G(torch.randn(16, 4))
            g_loss = F.softplus(-D({g_input})).mean()
            g_loss.backward()
            opt_g.step()
        """)
    assert [f for f in found if f[0] == "GW002"] == expected


def test_a_non_scalar_loss_points_at_the_unreduced_loss(shell):
    found = run(shell, SETUP + """
class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 3)
        self.criterion = nn.CrossEntropyLoss(reduction="none")

    def loss(self, x, tags):
        return self.criterion(self.fc(x), tags)
""", """
        tagger = Tagger()
        opt = torch.optim.SGD(tagger.parameters(), lr=0.1)
        loss = tagger.loss(torch.randn(6, 5), torch.randint(0, 3, (6,)))
        loss.backward()
        """, error=RuntimeError)
    assert found == [("GW009", 0, 10)]


def test_two_backward_calls_through_one_graph_point_at_the_first(shell):
    found = run(shell, SETUP, """
        trunk, head_a, head_b = nn.Linear(6, 8), nn.Linear(8, 1), nn.Linear(8, 1)
        shared = torch.tanh(trunk(torch.randn(9, 6)))
        loss_a = head_a(shared).pow(2).mean()
        loss_b = head_b(shared).pow(2).mean()
        loss_a.backward()
        loss_b.backward()
        """, error=RuntimeError)
    assert found == [("GW010", 1, 6)]


def test_layers_in_a_plain_list_are_unregistered(shell):
    found = run(shell, SETUP + """
class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, 8)
        self.hids = []
        for _ in range(2):
            self.hids.append(nn.Linear(8, 8))
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        h = self.inp(x).relu()
        for layer in self.hids:
            h = layer(h).relu()
        return self.out(h)
""", """
        model = MLP()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x, y = torch.randn(16, 4), torch.randn(16, 1)
        for epoch in range(3):
            opt.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            opt.step()
        """)
    assert found == [("GW007", 0, 10)]


def test_parameters_frozen_by_a_loop_point_at_the_freezing_line(shell):
    found = run(shell, SETUP, """
        net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        for param in net.parameters():
            param.requires_grad = False
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        """, error=RuntimeError)
    assert found == [("GW008", 1, 4)]


def test_softmax_in_forward_and_sigmoid_before_bce_with_logits(shell):
    model = SETUP + """
class Net(nn.Module):
    def __init__(self, out):
        super().__init__()
        self.fc = nn.Linear(4, out)

    def forward(self, x):
        return {act}
"""
    softmax = run(shell, model.format(act="F.softmax(self.fc(x), dim=1)"), """
        net = Net(3)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        for epoch in range(2):
            loss = nn.CrossEntropyLoss()(net(torch.randn(8, 4)), torch.randint(0, 3, (8,)))
            opt.zero_grad()
            loss.backward()
            opt.step()
        """)
    assert softmax == [("GW109", 0, 12)]
    sigmoid = run(shell, model.format(act="torch.sigmoid(self.fc(x))"), """
        net = Net(1)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        for epoch in range(2):
            loss = nn.BCEWithLogitsLoss()(net(torch.randn(8, 4)), torch.rand(8, 1).round())
            opt.zero_grad()
            loss.backward()
            opt.step()
        """)
    assert sigmoid == [("GW110", 0, 12)]


def test_a_layer_forward_never_uses_points_at_its_definition(shell):
    found = run(shell, SETUP + """
class Unmixer(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer1 = nn.Linear(4, 8)
        self.layer2 = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
        self.layer3 = nn.Linear(8, 4)

    def forward(self, x):
        return self.layer3(self.layer1(x).relu())
""", """
        model = Unmixer()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = torch.randn(16, 4)
        for epoch in range(3):
            opt.zero_grad()
            loss = F.mse_loss(model(x), x)
            loss.backward()
            opt.step()
        """)
    assert found == [("GW006", 0, 10)]


def test_a_warm_up_from_learning_rate_zero_is_not_a_bug(shell):
    found = run(shell, SETUP, """
        model = nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, step / 5))
        x, y = torch.randn(32, 4), torch.randn(32, 1)
        for step in range(20):
            opt.zero_grad()
            F.mse_loss(model(x), y).backward()
            opt.step()
            sched.step()
        """)
    assert found == []


def test_a_regression_diverging_on_unscaled_features_points_at_the_data(shell):
    found = run(shell, SETUP + """
ages = torch.linspace(18, 80, 64).unsqueeze(1)
features = torch.cat([ages, ages ** 2], dim=1)
spending = 3.0 * ages + 20.0
""", """
        model = nn.Linear(2, 1)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        for epoch in range(60):
            opt.zero_grad()
            loss = F.mse_loss(model(features), spending)
            loss.backward()
            opt.step()
        """)
    assert ("GW113", 0, 7) in found or ("GW105", 0, 7) in found, found
    assert {line for code, cell, line in found if code in ("GW105", "GW113")} == {7}


def test_zero_grad_inside_an_accumulation_loop_is_the_line_to_edit(shell):
    found = run(shell, SETUP, """
        model = nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        batches = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(12)]
        for i, (xb, yb) in enumerate(batches):
            opt.zero_grad()
            loss = F.mse_loss(model(xb), yb) / 4
            loss.backward()
            if (i + 1) % 4 == 0:
                opt.step()
        """)
    assert found == [("GW102", 1, 6)]  # gradients discarded before step(), not "call step() more"


def test_a_model_never_put_back_in_train_mode_points_at_the_training_function(shell):
    found = run(shell, SETUP + """
model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Linear(16, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))


def train():
    for i in range(0, 32, 8):
        loss = F.cross_entropy(model(x[i:i + 8]), y[i:i + 8])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test():
    model.eval()
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()
""", """
        for epoch in range(3):
            train()
            test()
        """)
    assert found == [("GW115", 0, 12)]


def test_a_head_replaced_after_the_optimizer_inside_a_trainer_object(shell):
    found = run(shell, SETUP + """
class Trainer:
    def __init__(self, model):
        self.model = model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def train(self, x, y, epochs):
        for epoch in range(epochs):
            loss = F.cross_entropy(self.model(x), y)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()

    def new_head(self, classes):
        for p in self.model.parameters():
            p.requires_grad = False
        self.model.head = nn.Linear(8, classes)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.body(x).relu())
""", """
        trainer = Trainer(Net())
        trainer.train(torch.randn(16, 4), torch.randint(0, 3, (16,)), epochs=3)
        trainer.new_head(2)
        trainer.train(torch.randn(16, 4), torch.randint(0, 2, (16,)), epochs=3)
        """)
    assert found == [("GW007", 0, 21)]


def test_a_loss_with_nothing_to_train_points_at_the_weight_it_is_computed_from(shell):
    found = run(shell, SETUP + """
x, y = torch.randn(16, 3), torch.randn(16, 1)
w = torch.randn(3, 1)
""", """
        for step in range(3):
            loss = F.mse_loss(x @ w, y)
            loss.backward()
        """, error=RuntimeError)
    assert found == [("GW001", 0, 7)]
