# source: https://discuss.pytorch.org/t/error-when-backpropagating-through-a-compiled-pytorch-module-multiple-times/201218/2
# bug-class: backward-error/compiled-region-backward-twice
# symptom: the training loop works without `torch.compile`, but with the compiled module the second `backward()` of a step raises "Trying to backward through the graph a second time"
# diagnosis: the compiled module returns the query and key projections from one compiled region, whose backward is a single fused node; the first `q_loss.backward()` frees it, so `k_loss.backward()` goes through a freed graph; the fix backpropagates the summed loss once (or retains the graph)
# expect-error: RuntimeError
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(201218)

DIM, HEAD = 16, 8


class QKProjection(nn.Module):
    """Projects two streams into query and key space, with a rotary-style position mix."""

    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(DIM, HEAD)
        self.k_proj = nn.Linear(DIM, HEAD)
        self.register_buffer("theta", torch.linspace(0.0, 3.0, HEAD // 2))

    def rotate(self, t, pos):
        t1, t2 = t.chunk(2, dim=-1)
        cos, sin = torch.cos(pos[:, None] * self.theta), torch.sin(pos[:, None] * self.theta)
        return torch.cat([t1 * cos - t2 * sin, t1 * sin + t2 * cos], dim=-1)

    def forward(self, xq, xk, pos):
        return self.rotate(self.q_proj(xq), pos), self.rotate(self.k_proj(xk), pos)


# the whole module is compiled; backend="aot_eager" traces the same graph as inductor and needs no C++ compiler
module = torch.compile(QKProjection(), backend="aot_eager")

teacher_q, teacher_k = nn.Linear(DIM, HEAD), nn.Linear(DIM, HEAD)
xq, xk = torch.randn(128, DIM), torch.randn(128, DIM)
pos = torch.arange(128, dtype=torch.float32) / 128
with torch.no_grad():
    target_q, target_k = teacher_q(xq), teacher_k(xk)

optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)

# %% gradwatch
for step in range(20):
    q, k = module(xq, xk, pos)
    q_loss = F.mse_loss(q, target_q)
    k_loss = F.mse_loss(k, target_k)
    optimizer.zero_grad()
    q_loss.backward()  # root-cause
    k_loss.backward()  # root-cause
    optimizer.step()
    if step % 5 == 0:
        print(f"step {step}: q {q_loss.item():.4f}  k {k_loss.item():.4f}")
