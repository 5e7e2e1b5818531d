# source: https://github.com/DeepMotionEditing/deep-motion-editing/issues/90
# bug-class: clean/gan-detach-in-discriminator-step
# symptom: none; both networks train (the generator's samples approach the real distribution)
# diagnosis: correct: `netD(fake.detach())` is used only in the discriminator step so D's loss does not backpropagate into G; the generator step uses `netD(fake)` without detach, so G gets its gradient
# %%
import torch
import torch.nn as nn

torch.manual_seed(90)

LATENT, POSE_DIM, BATCH = 8, 12, 64


def real_poses(n):
    """Synthetic 'motion frames': joint angles that follow a low-dimensional pattern."""
    phase = torch.rand(n, 1) * 6.2832
    basis = torch.linspace(0.5, 2.0, POSE_DIM)
    return torch.sin(phase * basis) * 0.8 + 0.05 * torch.randn(n, POSE_DIM)


# %%
class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(LATENT, 64), nn.BatchNorm1d(64), nn.ReLU(),
                                 nn.Linear(64, POSE_DIM), nn.Tanh())

    def forward(self, z):
        return self.net(z)


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(POSE_DIM, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))

    def forward(self, x):
        return self.net(x)


netG, netD = Generator(), Discriminator()
optG = torch.optim.Adam(netG.parameters(), lr=2e-3, betas=(0.5, 0.999))
optD = torch.optim.Adam(netD.parameters(), lr=2e-3, betas=(0.5, 0.999))
criterion = nn.BCEWithLogitsLoss()


def backward_D_basic(netD, real, fake):
    pred_real = netD(real)
    loss_D_real = criterion(pred_real, torch.ones_like(pred_real))
    pred_fake = netD(fake.detach())
    loss_D_fake = criterion(pred_fake, torch.zeros_like(pred_fake))
    loss_D = (loss_D_real + loss_D_fake) * 0.5
    loss_D.backward()
    return loss_D


def mean_gap():
    netG.eval()
    with torch.no_grad():
        gap = (netG(torch.randn(512, LATENT)).mean(0) - real_poses(512).mean(0)).abs().mean().item()
    netG.train()
    return gap


# %% gradwatch
print(f"before training: mean gap {mean_gap():.4f}")
for it in range(200):
    real = real_poses(BATCH)
    fake = netG(torch.randn(BATCH, LATENT))

    optD.zero_grad()
    loss_D = backward_D_basic(netD, real, fake)
    optD.step()

    optG.zero_grad()
    pred = netD(fake)
    loss_G = criterion(pred, torch.ones_like(pred))
    loss_G.backward()
    optG.step()

    if it % 100 == 0:
        print(f"iter {it:3d}: loss_D {loss_D.item():.3f}  loss_G {loss_G.item():.3f}")
print(f"after training: mean gap {mean_gap():.4f}")
