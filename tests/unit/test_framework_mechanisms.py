"""Mechanisms the framework programs of the real-bug corpus (``tests/real/frameworks``) rely on,
each on a small program run in-process through IPython's cell machinery: which ops pass no
gradient (asked of autograd), reentrant activation checkpointing, adapters created frozen,
warm-up from learning rate 0, a GAN's legitimate ``fake.detach()``."""

from __future__ import annotations

import pytest
import torch

from gradwatch.trace.grad_probe import passes_no_gradient
from test_causes import SETUP, run


def _verdict(op, func, *args, **kwargs) -> bool:
    return passes_no_gradient(op, func, args, kwargs, func(*args, **kwargs))


def test_autograd_itself_says_which_ops_pass_no_gradient():
    mu = torch.zeros(4, requires_grad=True)
    std = torch.ones(4, requires_grad=True)
    x = mu * 2
    assert _verdict("normal", torch.normal, mu, std) is True  # sampling: not a list entry
    assert _verdict("round", torch.round, x) is True
    assert _verdict("relu", torch.relu, x) is False  # zero here (x is 0), not by nature
    assert _verdict("clamp", torch.clamp, x, min=5.0) is False  # a threshold, not the op's nature
    assert _verdict("mul", torch.mul, x, torch.zeros(4)) is False  # a zero mask in the data
    assert _verdict("exp", torch.exp, x) is False
    assert _verdict("softmax", torch.softmax, x, -1) is False  # its outputs sum to 1, yet it has a gradient
    assert _verdict("mul", torch.mul, x, 0) is False  # `0 * aux_loss`: a zero weight, GW114's case
    assert _verdict("mul", torch.mul, x, 0.5) is False  # ... and the op itself is not cached as zero


def test_the_probe_leaves_the_random_stream_as_it_was():
    p = torch.sigmoid(torch.zeros(4, requires_grad=True))
    sample = torch.bernoulli(p)
    torch.manual_seed(3)
    expected = torch.rand(5)
    torch.manual_seed(3)
    passes_no_gradient("bernoulli_probe", torch.bernoulli, (p,), {}, sample)  # a new key: it probes
    assert torch.equal(torch.rand(5), expected)


VAE = """
enc, to_mu, to_logvar, dec = nn.Linear(8, 6), nn.Linear(6, 2), nn.Linear(6, 2), nn.Linear(2, 8)
params = [p for m in (enc, to_mu, to_logvar, dec) for p in m.parameters()]
opt = torch.optim.Adam(params, lr=1e-2)
data = torch.randn(64, 8)
for step in range(3):
    h = torch.relu(enc(data))
    mu, logvar = to_mu(h), to_logvar(h)
    z = {sample}
    kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
    loss = F.mse_loss(dec(z), data) + kl
    opt.zero_grad()
    loss.backward()
    opt.step()
"""


def test_sampling_with_torch_normal_starves_the_encoder_of_the_reconstruction_loss(shell):
    found = run(shell, SETUP, VAE.format(sample="torch.normal(mu, torch.exp(0.5 * logvar))"))
    assert found == [("GW003", 1, 9)]
    import gradwatch

    [d] = gradwatch.last_report().diagnostics
    assert d.message.startswith("`torch.normal(mu, torch.exp(0.5 * logvar))` passes no useful gradient to ")
    assert d.help is not None and d.help.startswith("It draws a random sample")
    assert "mu + std * torch.randn_like(std)" in d.help


def test_the_reparameterised_sample_is_quiet(shell):
    assert run(shell, SETUP, VAE.format(sample="mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)")) == []


LORA = """
from torch.utils.checkpoint import checkpoint

class LoRALinear(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.base = nn.Linear(d, d)
        self.base.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.randn(2, d) * 0.1)
        self.lora_B = nn.Parameter(torch.zeros(d, 2))

    def forward(self, x):
        return self.base(x) + x @ self.lora_A.t() @ self.lora_B.t()

blocks = nn.ModuleList(LoRALinear(8) for _ in range(2))
embed = nn.Embedding(20, 8).requires_grad_(False)
head = nn.Linear(8, 3)
"""


@pytest.mark.parametrize("reentrant, grad_input, expected", [
    (True, False, [("GW002", 2, 6)]),  # no input requires grad: the checkpoint records no graph
    (False, False, []),  # the non-reentrant checkpoint records the graph anyway
    (True, True, []),  # an input that requires grad: the backward recomputes through the block
])
def test_a_reentrant_checkpoint_without_an_input_that_requires_grad(shell, reentrant, grad_input, expected):
    found = run(shell, SETUP, LORA, f"""
        opt = torch.optim.AdamW([p for m in (*blocks, head) for p in m.parameters() if p.requires_grad])
        for step in range(2):
            h = embed(torch.randint(0, 20, (4, 5))).requires_grad_({grad_input})
            for block in blocks:
                h = checkpoint(block, h, use_reentrant={reentrant})
            loss = F.cross_entropy(head(h).reshape(-1, 3), torch.randint(0, 3, (20,)))
            opt.zero_grad()
            loss.backward()
            opt.step()
        """)
    assert found == expected
    if expected:  # one finding for the cause, at the call, with the fix that keeps checkpointing
        import gradwatch

        diagnostic = gradwatch.last_report().diagnostics[0]
        assert diagnostic.location.text == f"checkpoint(block, h, use_reentrant={reentrant})"
        said = f"{diagnostic.message} {diagnostic.help}"
        assert "no-grad" not in said and "use_reentrant=False" in said
        assert [r.location.line for r in diagnostic.related] == [12, 9]  # the op inside, backward()


ADAPTER = """
class LoRALinear(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.base = nn.Linear(d, d)
        self.base.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.randn(2, d) * 0.1{frozen})
        self.lora_B = nn.Parameter(torch.zeros(d, 2))

    def forward(self, x):
        return self.base(x) + x @ self.lora_A.t() @ self.lora_B.t()

model = nn.Sequential(LoRALinear(8), nn.ReLU(), nn.Linear(8, 3))
"""
TRAIN = """
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(2):
        loss = F.cross_entropy(model(torch.randn(16, 8)), torch.randint(0, 3, (16,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    """


def test_an_adapter_matrix_created_frozen_beside_a_trainable_one_is_a_warning_at_its_creation(shell):
    assert run(shell, SETUP, ADAPTER.format(frozen=", requires_grad=False"), TRAIN) == [("GW008", 1, 6)]


def test_an_adapter_created_frozen_is_a_warning_also_when_the_optimizer_was_built_in_an_earlier_cell(shell):
    build, loop = TRAIN.split("\n    for step", 1)
    found = run(shell, SETUP, ADAPTER.format(frozen=", requires_grad=False"), build, "for step" + loop)
    assert found == [("GW008", 1, 6)]
    import gradwatch

    diagnostic = gradwatch.last_report().diagnostics[0]
    assert [(r.location.cell, r.location.line) for r in diagnostic.related] == \
        [(diagnostic.location.cell + 1, 1)]  # the optimizer's line in the plain cell


def test_an_optimizer_from_an_earlier_cell_with_a_frozen_base_weight_stays_information(shell):
    build, loop = TRAIN.split("\n    for step", 1)
    assert run(shell, SETUP, ADAPTER.format(frozen=""), build, "for step" + loop) == []
    import gradwatch

    assert [(d.code, d.severity.value) for d in gradwatch.last_report()] == [("GW008", "info")]


def test_a_frozen_base_weight_in_the_optimizer_stays_information(shell):
    assert run(shell, SETUP, ADAPTER.format(frozen=""), TRAIN) == []
    import gradwatch

    assert [(d.code, d.severity.value) for d in gradwatch.last_report()] == [("GW008", "info")]


def test_a_linear_warmup_from_learning_rate_zero_is_not_a_step_that_changes_nothing(shell):
    found = run(shell, SETUP, """
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
        opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
        warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, step / 3))
        x, y = torch.randn(64, 6), torch.randint(0, 2, (64,))
        for step in range(8):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            warmup.step()
            opt.zero_grad()
        """)
    assert found == []


def test_a_gan_whose_generator_step_detaches_is_blamed_there_never_at_the_d_step_detach(shell):
    found = run(shell, SETUP, """
        G, D = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2)), nn.Linear(2, 1)
        opt_g, opt_d = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
        bce = nn.BCEWithLogitsLoss()
        for it in range(3):
            real, fake = torch.randn(16, 2), G(torch.randn(16, 2))
            loss_d = bce(D(real), torch.ones(16, 1)) + bce(D(fake.detach()), torch.zeros(16, 1))
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            loss_g = bce(D(fake.detach()), torch.ones(16, 1))
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
        """)
    assert ("GW002", 1, 11) in found
    assert all(line != 7 for _, _, line in found)  # the D step's detach is right


def test_a_boolean_attention_mask_made_minus_inf_inside_attention_is_no_non_finite_value(shell):
    found = run(shell, SETUP, """
        attn, head = nn.MultiheadAttention(8, 2, batch_first=True), nn.Linear(8, 3)
        opt = torch.optim.Adam([*attn.parameters(), *head.parameters()], lr=1e-2)
        x, y = torch.randn(4, 5, 8), torch.randint(0, 3, (4, 5))
        mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)  # masked_fill(-inf) inside attention
        for step in range(3):
            out = attn(x, x, x, attn_mask=mask, need_weights=False)[0]
            loss = F.cross_entropy(head(out).reshape(-1, 3), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
        """)
    assert found == []


def test_an_infinite_value_that_reaches_the_loss_is_still_reported_at_its_op(shell):
    found = run(shell, SETUP, """
        model = nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        raw, y = torch.rand(32, 4), torch.randn(32, 1)
        raw[5, 2] = 0.0
        for step in range(3):
            features = torch.log(raw)
            loss = F.mse_loss(model(features), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        """)
    assert found == [("GW105", 1, 7)]



def test_a_value_an_in_place_op_makes_infinite_is_reported_at_that_op(shell):
    # the multiplication's output is finite when it is made, the in-place division makes it
    # infinite: the checks wait in a queue, which is checked before the division writes
    found = run(shell, SETUP, """
        model = nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        raw, y = torch.rand(32, 4) + 0.5, torch.randn(32, 1)
        for step in range(3):
            features = raw * 2.0
            features.div_(0.0)
            loss = F.mse_loss(model(features), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        """)
    assert found == [("GW105", 1, 7)]  # `features.div_(0.0)`, not `raw * 2.0`


def test_a_non_finite_value_among_tensors_of_two_dtypes_is_reported_at_its_op(shell):
    # float64 and float32 tensors wait in one queue: they are checked in one batch per dtype
    found = run(shell, SETUP, """
        model = nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        raw, y = torch.rand(32, 4, dtype=torch.float64) - 0.5, torch.randn(32, 1)
        for step in range(3):
            scaled = raw * 3.0
            features = torch.sqrt(scaled).float()
            loss = F.mse_loss(model(features), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        """)
    assert found == [("GW105", 1, 7)]  # `torch.sqrt(scaled)`: NaN where `raw` is negative

NET = """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.fc = nn.Linear(6, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.body(x)))

model = Net()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
"""
LOOP = """
x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
for step in range(3):
    loss = F.cross_entropy({model}(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""


def test_an_optimizer_over_another_live_model_is_blamed_where_it_is_built(shell):
    found = run(shell, SETUP, NET, "copy = Net()\ncopy.load_state_dict(model.state_dict())" + LOOP.format(model="copy"))
    assert found == [("GW007", 1, 10)]
    import gradwatch

    assert gradwatch.last_report().diagnostics[0].message == \
        "`optimizer` updates `model`, but the loss is computed with `copy`"


def test_a_head_swapped_in_after_the_optimizer_is_blamed_where_it_is_made(shell):
    swap = "def new_head(net):\n    net.fc = nn.Linear(8, 3)"
    assert run(shell, SETUP, NET, swap, "new_head(model)" + LOOP.format(model="model")) == [("GW007", 2, 2)]


def test_train_called_once_before_a_loop_that_evaluates_is_the_line_to_move(shell):
    found = run(shell, SETUP, """
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(32, 6), torch.randint(0, 2, (32,))

        def evaluate(net):
            net.eval()
            with torch.no_grad():
                return F.cross_entropy(net(x), y).item()
        """, """
        model.train()
        for epoch in range(3):
            for i in range(2):
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            evaluate(model)
        """)
    assert found == [("GW115", 2, 2)]


MINI_TRAINER = '''
import torch

class MiniTrainer:
    """Stands in for Hugging Face's `Trainer`: it builds the optimizer over `model` only."""

    def __init__(self, model, loss_module, batches):
        self.model, self.loss_module, self.batches = model, loss_module, batches

    def train(self):
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-2)
        for x, y in self.batches:
            loss = self.loss_module(self.model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
'''


def test_a_module_left_out_of_a_framework_built_optimizer_is_blamed_where_the_framework_object_is_made(
        shell, tmp_path, monkeypatch):
    import gradwatch.locate.source_map as source_map

    (tmp_path / "mini_trainer.py").write_text(MINI_TRAINER)
    monkeypatch.syspath_prepend(str(tmp_path))  # ... and a library's file, as site-packages' are
    monkeypatch.setattr(source_map, "_LIBRARY_DIRS", (*source_map._LIBRARY_DIRS, str(tmp_path)))
    found = run(shell, SETUP, """
        import mini_trainer

        class ClassifierLoss(nn.Module):
            def __init__(self):
                super().__init__()
                self.classifier = nn.Linear(8, 3)

            def forward(self, features, y):
                return F.cross_entropy(self.classifier(features), y)

        encoder, loss_module = nn.Linear(6, 8), ClassifierLoss()
        batches = [(torch.randn(16, 6), torch.randint(0, 3, (16,))) for _ in range(3)]
        """, """
        trainer = mini_trainer.MiniTrainer(encoder, loss_module, batches)
        trainer.train()
        """)
    assert found == [("GW007", 2, 2)]
