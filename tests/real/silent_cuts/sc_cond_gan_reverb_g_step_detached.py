# source: https://github.com/nikhilsinghmus/image2reverb/issues/37
# bug-class: silent-cut/gan-generator-detach
# symptom: no error; the adversarial generator loss G_loss1 never falls and has no effect at all (the run is identical whatever its weight): the encoder/generator are trained by the L1 term alone
# diagnosis: the generator branch of `training_step` scores `self.d(fake_spec.detach(), f)`, so `G_loss1` has no path back to the encoder/generator; only `G_loss2` (L1) updates them; drop the `.detach()` there (the discriminator branch's `.detach()` is correct)
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(37)

N_IMG, N_FEAT, N_SPEC = 48, 16, 40


def make_pairs(n):
    """Fake 'scene images' and the reverb spectrograms they imply (a decaying envelope)."""
    img = torch.randn(n, N_IMG)
    decay = torch.sigmoid(img[:, :4].sum(1, keepdim=True))
    t = torch.linspace(0, 1, N_SPEC)
    spec = torch.exp(-t * (1 + 6 * decay)) + 0.02 * torch.randn(n, N_SPEC)
    return img, spec


train_img, train_spec = make_pairs(256)
val_img, val_spec = make_pairs(64)


# %%
class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(N_IMG, 64), nn.ReLU(), nn.Linear(64, N_FEAT))

    def forward(self, x):
        return self.net(x)


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(N_FEAT + 8, 64), nn.LeakyReLU(0.2), nn.Linear(64, N_SPEC))

    def forward(self, f, z):
        return self.net(torch.cat([f, z], 1))


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(N_SPEC + N_FEAT, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1), nn.Sigmoid())

    def forward(self, spec, f):
        return self.net(torch.cat([spec, f.detach()], 1))


class Image2Reverb(nn.Module):
    def __init__(self, l1_weight=10.0):
        super().__init__()
        self.enc, self.g, self.d = Encoder(), Generator(), Discriminator()
        self.l1_weight = l1_weight

    def configure_optimizers(self):
        opt_enc = torch.optim.Adam(self.enc.parameters(), lr=2e-3)
        opt_g = torch.optim.Adam(self.g.parameters(), lr=2e-3)
        opt_d = torch.optim.Adam(self.d.parameters(), lr=2e-3)
        return [opt_enc, opt_g, opt_d]

    def training_step(self, batch, optimizer_idx):
        img, spec = batch
        f = self.enc(img)
        z = torch.randn(img.shape[0], 8)
        fake_spec = self.g(f, z)
        if optimizer_idx in (0, 1):
            d_fake2 = self.d(fake_spec.detach(), f)  # root-cause
            G_loss1 = F.mse_loss(d_fake2, torch.ones_like(d_fake2))
            G_loss2 = F.l1_loss(fake_spec, spec)
            return G_loss1 + self.l1_weight * G_loss2, G_loss1
        d_real = self.d(spec, f)
        d_fake = self.d(fake_spec.detach(), f)
        D_loss = 0.5 * (F.mse_loss(d_real, torch.ones_like(d_real)) + F.mse_loss(d_fake, torch.zeros_like(d_fake)))
        return D_loss, d_real.mean(), d_fake.mean()


def fit(model, epochs=4, batch_size=64):
    optimizers = model.configure_optimizers()
    for epoch in range(epochs):
        for i in range(0, len(train_img), batch_size):
            batch = (train_img[i:i + batch_size], train_spec[i:i + batch_size])
            for idx, opt in enumerate(optimizers):
                for o in optimizers:
                    o.zero_grad()
                out = model.training_step(batch, idx)
                out[0].backward()  # related
                opt.step()
        g_adv = model.training_step(batch, 0)[1].item()
        print(f"epoch {epoch}: D_loss {out[0].item():.4f}  D_real_mean {out[1].item():.3f}  "
              f"D_fake_mean {out[2].item():.3f}  G_loss1 {g_adv:.4f}  val L1 {validate(model):.4f}")


def validate(model):
    with torch.no_grad():
        f = model.enc(val_img)
        return F.l1_loss(model.g(f, torch.randn(len(val_img), 8)), val_spec).item()


# %% gradwatch
model = Image2Reverb()
fit(model)
