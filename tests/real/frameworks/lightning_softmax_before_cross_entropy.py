# source: https://github.com/Lightning-Universe/lightning-bolts/pull/655
# bug-class: loss/softmax-before-cross-entropy
# symptom: the Lightning logistic-regression model trains slowly and its loss plateaus well above what plain logits reach; no error
# diagnosis: `forward` returns `F.softmax(...)` and `training_step` passes those probabilities to `F.cross_entropy`, which applies log-softmax again: softmax is applied twice and the gradients shrink; the fix returns the raw logits
# %%
import os
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
import lightning as L
from torch.utils.data import DataLoader, TensorDataset

warnings.filterwarnings("ignore")
torch.manual_seed(655)

N_FEATURES, N_CLASSES = 16, 4
centers = torch.randn(N_CLASSES, N_FEATURES) * 1.5
labels = torch.randint(0, N_CLASSES, (512,))
features = centers[labels] + torch.randn(512, N_FEATURES)
train_loader = DataLoader(TensorDataset(features, labels), batch_size=64, shuffle=True)


class LogisticRegression(L.LightningModule):
    def __init__(self, input_dim, num_classes, learning_rate=0.05):
        super().__init__()
        self.save_hyperparameters()
        self.linear = nn.Linear(input_dim, num_classes)

    def forward(self, x):
        return F.softmax(self.linear(x), dim=-1)  # root-cause

    def training_step(self, batch, batch_idx):
        x, y = batch
        y_hat = self(x)
        loss = F.cross_entropy(y_hat, y)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate)


# %% gradwatch
model = LogisticRegression(N_FEATURES, N_CLASSES)
trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
trainer.fit(model, train_loader)  # related
with torch.no_grad():
    accuracy = (model(features).argmax(1) == labels).float().mean().item()
print(f"train accuracy {accuracy:.3f}")
