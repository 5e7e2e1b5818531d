# source: https://github.com/Hsintien-Ng/idinvert_pytorch-reproduced/issues/1
# bug-class: zero-grad/missing-for-one-optimizer
# symptom: the encoder's reconstruction loss goes down, but the discriminator's gradient norm grows every epoch (1.4 -> 5.5, where it stays near 0.16 with zeroed gradients); no error
# diagnosis: the discriminator update calls `loss_D.backward()` and `optimizer_D.step()` without `optimizer_D.zero_grad()`, so D's gradients pile up across iterations and also keep the (opposite-sign) gradients that the encoder's adversarial loss left in D; the fix inserts `optimizer_D.zero_grad()` above `loss_D.backward()`, the line marked here
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(9)
LATENT, IMG = 8, 32


def mlp(sizes, last_act=None):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.2))
    if last_act is not None:
        layers.append(last_act)
    return nn.Sequential(*layers)


# a "pretrained" generator that stays fixed during encoder training
G = mlp([LATENT, 64, IMG], nn.Tanh())
G.requires_grad_(False)
G.eval()

with torch.no_grad():
    real_images = G(torch.randn(512, LATENT)) + 0.02 * torch.randn(512, IMG)


def batches(data, batch_size=64):
    perm = torch.randperm(len(data))
    for i in range(0, len(data), batch_size):
        yield data[perm[i:i + batch_size]]


# %%
E = mlp([IMG, 64, 64, LATENT])
D = mlp([IMG, 64, 1])
optimizer_E = torch.optim.Adam(E.parameters(), lr=1e-3, betas=(0.5, 0.99))
optimizer_D = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.99))


def grad_norm(module):
    return torch.sqrt(sum((p.grad ** 2).sum() for p in module.parameters() if p.grad is not None)).item()


# %% gradwatch
def training_loop_encoder(epochs=5, adv_weight=0.1):
    it = 0
    for epoch in range(epochs):
        for x in batches(real_images):
            # ----- encoder step: reconstruct through the fixed generator, fool D -----
            x_rec = G(E(x))
            loss_pix = F.mse_loss(x_rec, x)
            loss_adv = F.softplus(-D(x_rec)).mean()
            loss_E = loss_pix + adv_weight * loss_adv
            optimizer_E.zero_grad()
            loss_E.backward()
            optimizer_E.step()

            # ----- discriminator step: real vs. reconstructed -----
            x_fake = G(E(x)).detach()
            loss_D = F.softplus(D(x_fake)).mean() + F.softplus(-D(x)).mean()
            loss_D.backward()  # root-cause
            optimizer_D.step()  # related
            it += 1
        print(f"epoch {epoch}: pix {loss_pix.item():.4f}  loss_D {loss_D.item():.4f}  |grad D| {grad_norm(D):.3f}")


training_loop_encoder()
