# source: https://github.com/inria-thoth/HySUPP/issues/3
# bug-class: unused-parameter/layer-never-called
# symptom: unmixing trains and the reconstruction loss goes down, but the weights of `layer2` never change and their `.grad` stays None; no error
# diagnosis: `self.layer2` is built in `MiSiCNet.__init__` but `forward` goes from `layer1` straight to `layer3`, so the optimizer holds parameters that no backward() ever reaches
# %%
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(3)
np.random.seed(3)

H, W, BANDS, N_END = 8, 8, 16, 3


def make_scene(h, w, bands, n_end):
    """A synthetic hyperspectral image: each pixel mixes n_end smooth endmember spectra."""
    grid = np.linspace(0, 1, bands)
    endmembers = np.stack([0.3 + 0.5 * np.exp(-((grid - c) ** 2) / 0.05) for c in (0.2, 0.5, 0.8)])
    logits = np.random.randn(h * w, n_end) * 1.5
    abund = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pixels = abund @ endmembers + 0.01 * np.random.randn(h * w, bands)
    cube = pixels.T.reshape(bands, h, w).astype(np.float32)
    return torch.from_numpy(cube).unsqueeze(0), torch.from_numpy(endmembers.astype(np.float32))


Y, E_true = make_scene(H, W, BANDS, N_END)
print("scene", tuple(Y.shape))


# %%
class MiSiCNet(nn.Module):
    """Minimum-simplex convolutional unmixing network (small version)."""

    def __init__(self, bands, n_end, hidden=16):
        super().__init__()
        self.layer1 = nn.Sequential(
            nn.Conv2d(bands, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.LeakyReLU(0.1)
        )
        self.layer2 = nn.Sequential(  # root-cause
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.BatchNorm2d(hidden), nn.LeakyReLU(0.1)
        )
        self.layer3 = nn.Sequential(nn.Conv2d(hidden, n_end, 3, padding=1), nn.BatchNorm2d(n_end))
        self.decoder = nn.Linear(n_end, bands, bias=False)

    def abundances(self, y):
        h = self.layer1(y)
        h = self.layer3(h)
        return F.softmax(h, dim=1)

    def forward(self, y):
        a = self.abundances(y)                       # (1, n_end, H, W)
        a_flat = a.flatten(2).transpose(1, 2)        # (1, H*W, n_end)
        rec = self.decoder(a_flat)                   # (1, H*W, bands)
        return rec.transpose(1, 2).reshape_as(y), a


def simplex_volume_penalty(endmembers):
    centred = endmembers - endmembers.mean(dim=0, keepdim=True)
    return (centred ** 2).sum()


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def changed(module, before):
    return any(not torch.equal(p, b) for p, b in zip(module.parameters(), before))


# %% gradwatch
def unmix(y, epochs=60, lam=1e-3, lr=1e-2):
    model = MiSiCNet(BANDS, N_END)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    before2 = snapshot(model.layer2)
    for epoch in range(epochs):
        optimizer.zero_grad()
        rec, _ = model(y)
        loss = F.mse_loss(rec, y) + lam * simplex_volume_penalty(model.decoder.weight.t())
        loss.backward()
        optimizer.step()  # related
        if epoch % 15 == 0 or epoch == epochs - 1:
            print(f"epoch {epoch:3d}  loss {loss.item():.5f}")
    return model, before2


model, before2 = unmix(Y)
print("layer2 changed:", changed(model.layer2, before2))
print("layer2 grad is None:", model.layer2[0].weight.grad is None)
