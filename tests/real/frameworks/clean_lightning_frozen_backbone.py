# source: https://github.com/Lightning-AI/pytorch-lightning/issues/5114
# bug-class: clean/lightning-frozen-pretrained-backbone
# symptom: none: a pretrained encoder is reused, frozen, as a feature extractor inside another LightningModule; the new head trains and the loss goes down
# diagnosis: correct: `encoder.freeze()` sets `requires_grad=False` on the encoder and puts it in eval mode, and `configure_optimizers` passes only the head's parameters; frozen weights are intended
# %%
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
import lightning as L
from torch.utils.data import DataLoader, TensorDataset

warnings.filterwarnings("ignore")
torch.manual_seed(5114)

IN_DIM, CODE_DIM, N_CLASSES = 32, 8, 4


class AutoEncoder(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(IN_DIM, 64), nn.ReLU(), nn.Linear(64, CODE_DIM))
        self.decoder = nn.Sequential(nn.Linear(CODE_DIM, 64), nn.ReLU(), nn.Linear(64, IN_DIM))

    def forward(self, x):
        return self.encoder(x)


class Classifier(L.LightningModule):
    def __init__(self, pretrained: AutoEncoder):
        super().__init__()
        self.feature_extractor = pretrained
        self.feature_extractor.freeze()
        self.head = nn.Sequential(nn.Linear(CODE_DIM, 32), nn.ReLU(), nn.Linear(32, N_CLASSES))

    def forward(self, x):
        with torch.no_grad():
            features = self.feature_extractor(x)
        return self.head(features)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.head.parameters(), lr=1e-2)


centers = torch.randn(N_CLASSES, IN_DIM) * 2
y = torch.randint(0, N_CLASSES, (512,))
x = centers[y] + torch.randn(512, IN_DIM)
loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
autoencoder = AutoEncoder()  # stands in for the checkpoint the thread loads

# %% gradwatch
model = Classifier(autoencoder)
trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
trainer.fit(model, loader)
with torch.no_grad():
    print(f"train accuracy {(model(x).argmax(1) == y).float().mean().item():.3f}")
