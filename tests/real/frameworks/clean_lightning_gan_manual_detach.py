# source: https://github.com/Lightning-AI/pytorch-lightning/pull/6294
# bug-class: clean/lightning-gan-manual-optimization-detach
# symptom: none: generator and discriminator both train under Lightning's manual optimization
# diagnosis: correct: the discriminator step scores `fake.detach()` so its loss does not reach the generator, and the generator step scores `fake` itself; each optimizer is stepped after its own `manual_backward`
# %%
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
import lightning as L
from torch.utils.data import DataLoader, TensorDataset

warnings.filterwarnings("ignore")
torch.manual_seed(6294)

LATENT, DATA_DIM = 4, 2
angles = torch.rand(1024) * 6.2832
ring = torch.stack([angles.cos(), angles.sin()], 1) * 2 + 0.05 * torch.randn(1024, 2)
loader = DataLoader(TensorDataset(ring), batch_size=64, shuffle=True)


class GAN(L.LightningModule):
    def __init__(self, lr=2e-3):
        super().__init__()
        self.automatic_optimization = False
        self.lr = lr
        self.generator = nn.Sequential(nn.Linear(LATENT, 32), nn.ReLU(), nn.Linear(32, DATA_DIM))
        self.discriminator = nn.Sequential(nn.Linear(DATA_DIM, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))

    def forward(self, z):
        return self.generator(z)

    def training_step(self, batch, batch_idx):
        (real,) = batch
        opt_g, opt_d = self.optimizers()
        z = torch.randn(len(real), LATENT)
        fake = self(z)

        pred_real = self.discriminator(real)
        pred_fake = self.discriminator(fake.detach())
        loss_d = (F.binary_cross_entropy_with_logits(pred_real, torch.ones_like(pred_real))
                  + F.binary_cross_entropy_with_logits(pred_fake, torch.zeros_like(pred_fake))) / 2
        opt_d.zero_grad()
        self.manual_backward(loss_d)
        opt_d.step()

        pred = self.discriminator(fake)
        loss_g = F.binary_cross_entropy_with_logits(pred, torch.ones_like(pred))
        opt_g.zero_grad()
        self.manual_backward(loss_g)
        opt_g.step()
        self.log_dict({"loss_d": loss_d, "loss_g": loss_g})

    def configure_optimizers(self):
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr, betas=(0.5, 0.999))
        return opt_g, opt_d


# %% gradwatch
gan = GAN()
trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
trainer.fit(gan, loader)
with torch.no_grad():
    radius = gan(torch.randn(512, LATENT)).norm(dim=1).mean().item()
print(f"mean radius of generated points {radius:.3f} (data: 2.0)")
