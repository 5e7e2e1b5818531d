# source: https://github.com/naver-ai/StyleMapGAN/issues/16
# bug-class: backward-error/backward-twice
# symptom: `(w_rec_loss * lambda_w_rec).backward()` raises "Trying to backward through the graph a second time"
# diagnosis: `adv_loss` and `w_rec_loss` both come from the same generator forward (`fake = self.generator(...)`); the first `g_loss.backward()` frees that shared graph, so the second backward cannot go through it; backward the sum once (or retain the graph in the first call)
# expect-error: RuntimeError
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(2)

LATENT = 16
IMG = 64
LAMBDA_ADV = 1.0
LAMBDA_W_REC = 1.0


def real_batch(n=32):
    base = torch.linspace(-1, 1, IMG)
    phase = torch.rand(n, 1) * 3.14
    return torch.sin(base * 3 + phase) + 0.05 * torch.randn(n, IMG)


# %%
class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.generator = nn.Sequential(nn.Linear(LATENT, 64), nn.LeakyReLU(0.2), nn.Linear(64, IMG), nn.Tanh())
        self.encoder = nn.Sequential(nn.Linear(IMG, 64), nn.LeakyReLU(0.2), nn.Linear(64, LATENT))
        self.discriminator = nn.Sequential(nn.Linear(IMG, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))

    def forward(self, real, mode):
        w = torch.randn(real.size(0), LATENT)
        fake = self.generator(w)
        if mode == "D":
            return F.softplus(self.discriminator(fake.detach())).mean() + F.softplus(-self.discriminator(real)).mean()
        adv_loss = F.softplus(-self.discriminator(fake)).mean()
        w_rec_loss = F.mse_loss(self.encoder(fake), w)
        return adv_loss, w_rec_loss


model = Model()
g_optim = torch.optim.Adam(list(model.generator.parameters()) + list(model.encoder.parameters()), lr=2e-3)
d_optim = torch.optim.Adam(model.discriminator.parameters(), lr=2e-3)


# %% gradwatch
def train(iters=40):
    for i in range(iters):
        real = real_batch()

        d_loss = model(real, "D")
        d_optim.zero_grad()
        d_loss.backward()
        d_optim.step()

        adv_loss, w_rec_loss = model(real, "G")
        g_loss = adv_loss * LAMBDA_ADV
        g_optim.zero_grad()
        g_loss.backward()  # root-cause
        (w_rec_loss * LAMBDA_W_REC).backward()  # related
        g_optim.step()

        if i % 10 == 0:
            print(f"iter {i} d {d_loss.item():.3f} adv {adv_loss.item():.3f} w_rec {w_rec_loss.item():.3f}")


train()
