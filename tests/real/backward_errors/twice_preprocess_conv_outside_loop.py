# source: https://github.com/lucidrains/denoising-diffusion-pytorch/issues/109
# bug-class: backward-error/backward-twice
# symptom: the first loss.backward() works, the second one raises "Trying to backward through the graph a second time"
# diagnosis: the training set is made by running `to_channels` (an `nn.Conv1d` with trainable weights) once, outside the training loop, so every batch hangs off that one conv graph and the first backward frees it; convert the data under `torch.no_grad()` (or inside the loop)
# expect-error: RuntimeError
# %%
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(9)

SEQ = 64
TIMESTEPS = 100

t_axis = torch.linspace(0, 1, SEQ)
raw_signals = torch.stack(
    [torch.stack([torch.sin(2 * math.pi * f * t_axis), torch.cos(2 * math.pi * f * t_axis)]) for f in torch.linspace(1, 4, 96)]
)  # (96, 2, SEQ)

to_channels = nn.Conv1d(2, 1, kernel_size=1)
dataset = to_channels(raw_signals)  # root-cause


# %%
class Denoiser1D(nn.Module):
    def __init__(self, dim=16):
        super().__init__()
        self.time_mlp = nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.conv_in = nn.Conv1d(1, dim, 3, padding=1)
        self.conv_mid = nn.Conv1d(dim, dim, 3, padding=1)
        self.conv_out = nn.Conv1d(dim, 1, 3, padding=1)

    def forward(self, x, t):
        h = self.conv_in(x) + self.time_mlp(t.float().unsqueeze(1) / TIMESTEPS).unsqueeze(-1)
        h = F.silu(self.conv_mid(F.silu(h)))
        return self.conv_out(h)


betas = torch.linspace(1e-4, 0.02, TIMESTEPS)
alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)


def q_sample(x_start, t, noise):
    a = alphas_cumprod[t].sqrt().view(-1, 1, 1)
    s = (1 - alphas_cumprod[t]).sqrt().view(-1, 1, 1)
    return a * x_start + s * noise


def p_losses(model, x_start):
    t = torch.randint(0, TIMESTEPS, (x_start.size(0),))
    noise = torch.randn_like(x_start)
    return F.mse_loss(model(q_sample(x_start, t, noise), t), noise)


# %% gradwatch
class Trainer:
    def __init__(self, model, data, batch_size=16, lr=1e-3):
        self.model, self.data, self.batch_size = model, data, batch_size
        self.opt = torch.optim.Adam(model.parameters(), lr=lr)

    def train(self, steps=30):
        for step in range(steps):
            idx = torch.randint(0, self.data.size(0), (self.batch_size,))
            loss = p_losses(self.model, self.data[idx])
            self.opt.zero_grad()
            loss.backward()  # related
            self.opt.step()
            if step % 10 == 0:
                print(f"step {step} loss {loss.item():.4f}")


Trainer(Denoiser1D(), dataset).train()
