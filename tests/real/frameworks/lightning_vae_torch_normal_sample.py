# source: https://github.com/pytorch/pytorch/issues/4620
# bug-class: silent-cut/sampling-without-reparameterisation
# symptom: the VAE's reconstructions stay blurry and the encoder's mean barely depends on the input: it only follows the KL term; no error
# diagnosis: the latent is drawn with `torch.normal(mu, std)`, which passes no gradient to `mu` or `std`, so the reconstruction loss never reaches the encoder; the fix samples with the reparameterisation `mu + std * torch.randn_like(std)`
# %%
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
import lightning as L
from torch.utils.data import DataLoader, TensorDataset

warnings.filterwarnings("ignore")
torch.manual_seed(4620)

X_DIM, Z_DIM = 20, 4
latent = torch.randn(640, Z_DIM)
mixing = torch.randn(Z_DIM, X_DIM)
data = torch.tanh(latent @ mixing) + 0.05 * torch.randn(640, X_DIM)
loader = DataLoader(TensorDataset(data), batch_size=64, shuffle=True)


class VAE(L.LightningModule):
    def __init__(self, lr=3e-3):
        super().__init__()
        self.lr = lr
        self.encoder = nn.Sequential(nn.Linear(X_DIM, 64), nn.ReLU())
        self.to_mu = nn.Linear(64, Z_DIM)
        self.to_logvar = nn.Linear(64, Z_DIM)
        self.decoder = nn.Sequential(nn.Linear(Z_DIM, 64), nn.ReLU(), nn.Linear(64, X_DIM))

    def forward(self, x):
        h = self.encoder(x)
        mu, logvar = self.to_mu(h), self.to_logvar(h)
        std = torch.exp(0.5 * logvar)
        z = torch.normal(mu, std)  # root-cause
        return self.decoder(z), mu, logvar

    def training_step(self, batch, batch_idx):
        (x,) = batch
        recon, mu, logvar = self(x)
        recon_loss = F.mse_loss(recon, x, reduction="sum") / len(x)
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(x)
        loss = recon_loss + kl
        self.log("loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


# %% gradwatch
vae = VAE()
trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
trainer.fit(vae, loader)  # related
with torch.no_grad():
    recon, mu, _ = vae(data)
print(f"reconstruction error {F.mse_loss(recon, data).item():.4f}")
