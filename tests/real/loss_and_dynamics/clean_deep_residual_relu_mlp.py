# source: https://github.com/pytorch/contrib/pull/33
# bug-class: clean/deep-residual-relu
# symptom: none: a 16-block (34 linear layers) MLP trains quickly and the loss goes down
# diagnosis: correct: every block is pre-activation ReLU + Linear wrapped in a residual shortcut (`x + f(x)`) with a LayerNorm, so gradients reach the first layers through the identity path; no saturating activations
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(33)


class ResidualBlock(nn.Sequential):
    """Runs its modules in sequence and adds the block's input to their output."""

    def forward(self, x):
        return x + super().forward(x)


def make_resmlp(dim_in, width, n_blocks, n_out):
    blocks = [ResidualBlock(nn.LayerNorm(width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
              for _ in range(n_blocks)]
    return nn.Sequential(nn.Linear(dim_in, width), *blocks, nn.ReLU(), nn.Linear(width, n_out))


def make_spirals(n=400, turns=1.5, noise=0.15):
    t = torch.rand(n) * turns * 2 * 3.1416
    label = torch.randint(0, 2, (n,))
    r = t / (turns * 2 * 3.1416) + 0.1
    angle = t + label.float() * 3.1416
    x = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=1) + noise * r.unsqueeze(1) * torch.randn(n, 2) * 0.3
    return x, label


x_train, y_train = make_spirals()
x_val, y_val = make_spirals(200)


# %% gradwatch
model = make_resmlp(2, 32, n_blocks=16, n_out=2)
optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)


def accuracy(x, y):
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


for epoch in range(8):
    model.train()
    perm = torch.randperm(len(x_train))
    for i in range(0, len(x_train), 50):
        idx = perm[i:i + 50]
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch}: loss {loss.item():.4f}, val acc {accuracy(x_val, y_val):.3f}")
