# source: https://github.com/dragen1860/MAML-Pytorch/issues/40
# bug-class: silent-cut/no-grad-inner-loop
# symptom: with update_step=1, loss_q.backward() in the meta update raises "element 0 of tensors does not require grad and does not have a grad_fn"
# diagnosis: the query loss after the first inner step is computed inside `with torch.no_grad():` (meant for logging only); when update_step=1 the later loop that recomputes it with gradients never runs, so the meta loss comes from the no_grad block and is cut from the meta-parameters
# expect-error: RuntimeError
# %%
import math

import torch
import torch.nn.functional as F

torch.manual_seed(40)

CONFIG = {"update_lr": 0.01, "meta_lr": 1e-3, "update_step": 1, "task_num": 4, "k_spt": 5, "k_qry": 10}


def sample_sine_tasks(task_num, k_spt, k_qry):
    tasks = []
    for _ in range(task_num):
        amp, phase = 0.1 + 4.9 * torch.rand(1), math.pi * torch.rand(1)
        x = 10 * torch.rand(k_spt + k_qry, 1) - 5
        y = amp * torch.sin(x + phase)
        tasks.append((x[:k_spt], y[:k_spt], x[k_spt:], y[k_spt:]))
    return tasks


# %%
class Learner(torch.nn.Module):
    """Functional MLP: forward() can run on the meta-parameters or on fast weights."""

    def __init__(self, hidden=40):
        super().__init__()
        self.vars = torch.nn.ParameterList()
        for n_in, n_out in [(1, hidden), (hidden, hidden), (hidden, 1)]:
            w = torch.nn.Parameter(torch.empty(n_out, n_in))
            torch.nn.init.kaiming_normal_(w)
            self.vars.append(w)
            self.vars.append(torch.nn.Parameter(torch.zeros(n_out)))

    def forward(self, x, vars=None):
        vars = list(self.vars) if vars is None else vars
        for i in range(0, len(vars), 2):
            x = F.linear(x, vars[i], vars[i + 1])
            if i < len(vars) - 2:
                x = F.relu(x)
        return x


class Meta(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.net = Learner()
        self.meta_optim = torch.optim.Adam(self.net.parameters(), lr=cfg["meta_lr"])

    def forward(self, tasks):
        steps = self.cfg["update_step"]
        losses_q = [0.0 for _ in range(steps + 1)]
        for x_spt, y_spt, x_qry, y_qry in tasks:
            loss = F.mse_loss(self.net(x_spt), y_spt)
            grad = torch.autograd.grad(loss, self.net.parameters())
            fast_weights = [p - self.cfg["update_lr"] * g for p, g in zip(self.net.parameters(), grad)]

            with torch.no_grad():
                losses_q[0] += F.mse_loss(self.net(x_qry, list(self.net.parameters())), y_qry)
            with torch.no_grad():  # root-cause
                losses_q[1] += F.mse_loss(self.net(x_qry, fast_weights), y_qry)

            for k in range(1, steps):
                loss = F.mse_loss(self.net(x_spt, fast_weights), y_spt)
                grad = torch.autograd.grad(loss, fast_weights)
                fast_weights = [w - self.cfg["update_lr"] * g for w, g in zip(fast_weights, grad)]
                losses_q[k + 1] += F.mse_loss(self.net(x_qry, fast_weights), y_qry)

        loss_q = losses_q[-1] / len(tasks)
        self.meta_optim.zero_grad()
        loss_q.backward()  # related
        self.meta_optim.step()
        return [float(l) / len(tasks) for l in losses_q]


# %% gradwatch
maml = Meta(CONFIG)
for epoch in range(20):
    tasks = sample_sine_tasks(CONFIG["task_num"], CONFIG["k_spt"], CONFIG["k_qry"])
    losses = maml(tasks)
    if epoch % 5 == 0:
        print(f"epoch {epoch:2d}: query loss before/after adaptation {losses[0]:.3f} / {losses[-1]:.3f}")
