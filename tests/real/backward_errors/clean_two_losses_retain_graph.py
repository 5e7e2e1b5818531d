# source: https://github.com/ueoo/AGIS-Net/issues/8
# bug-class: clean/two-backward-retain-graph
# symptom: none; both generator losses train the shared encoder with one optimizer step
# diagnosis: correct: the first backward keeps the shared graph with `retain_graph=True`, the second backward adds its gradients to the same `.grad`, and `optimizer_G.step()` runs once after both
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(12)

GLYPH = 64  # a flattened 8x8 glyph


PROJ = torch.randn(GLYPH, GLYPH) / GLYPH ** 0.5


def make_pairs(n=96):
    content = torch.rand(n, GLYPH)
    shape = torch.sigmoid(4 * (content - 0.5) @ PROJ)
    texture = shape * torch.linspace(0.2, 1.0, GLYPH)
    return content, shape, texture


train_data = make_pairs()
val_data = make_pairs(32)


# %%
class Generator(nn.Module):
    def __init__(self, hidden=48):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(GLYPH, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.shape_decoder = nn.Sequential(nn.Linear(hidden, GLYPH), nn.Sigmoid())
        self.texture_decoder = nn.Linear(hidden + GLYPH, GLYPH)

    def forward(self, content):
        h = self.encoder(content)
        fake_shape = self.shape_decoder(h)
        fake_texture = self.texture_decoder(torch.cat([h, fake_shape], dim=1))
        return fake_shape, fake_texture


netG = Generator()
netD = nn.Sequential(nn.Linear(GLYPH, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
optimizer_G = torch.optim.Adam(netG.parameters(), lr=2e-3)
optimizer_D = torch.optim.Adam(netD.parameters(), lr=1e-3)


def validate():
    content, shape, texture = val_data
    with torch.no_grad():
        fs, ft = netG(content)
    return F.l1_loss(fs, shape).item(), F.l1_loss(ft, texture).item()


# %% gradwatch
def optimize_parameters(content, shape, texture):
    fake_shape, fake_texture = netG(content)

    # discriminator on the texture output
    optimizer_D.zero_grad()
    loss_D = F.softplus(netD(fake_texture.detach())).mean() + F.softplus(-netD(texture)).mean()
    loss_D.backward()
    optimizer_D.step()

    # generator: two losses through the shared encoder, one step
    optimizer_G.zero_grad()
    loss_G_shape = F.l1_loss(fake_shape, shape) * 10.0
    loss_G_shape.backward(retain_graph=True)
    loss_G_texture = F.l1_loss(fake_texture, texture) * 10.0 + F.softplus(-netD(fake_texture)).mean()
    loss_G_texture.backward()
    optimizer_G.step()
    return loss_G_shape.item(), loss_G_texture.item()


content, shape, texture = train_data
for epoch in range(20):
    for i in range(0, len(content), 32):
        ls, lt = optimize_parameters(content[i:i + 32], shape[i:i + 32], texture[i:i + 32])
    if epoch % 5 == 4:
        vs, vt = validate()
        print(f"epoch {epoch} G shape {ls:.3f} G texture {lt:.3f} val shape {vs:.3f} val texture {vt:.3f}")
