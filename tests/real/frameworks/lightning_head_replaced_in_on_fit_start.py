# source: https://github.com/Lightning-AI/pytorch-lightning/issues/16170
# bug-class: optimizer/params-replaced-after-optimizer
# symptom: the fine-tune runs to the end, but the loss stays flat and accuracy stays near chance: the new classification head never changes from its random initialisation; no error
# diagnosis: a fine-tuning callback freezes the backbone and swaps in a new head in `on_fit_start`, but `Trainer.fit` calls `configure_optimizers` before `on_fit_start`: the optimizer holds only the old, now unused head, and the new `nn.Linear` gets gradients that no optimizer applies; the head has to be replaced before `configure_optimizers` runs (in `setup`, or before `fit`)
# %%
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
import lightning as L
from torch.utils.data import DataLoader, TensorDataset

warnings.filterwarnings("ignore")
L.seed_everything(16170, verbose=False)

IN_DIM, PRETRAIN_CLASSES, N_CLASSES = 24, 10, 4
centers = torch.randn(N_CLASSES, IN_DIM) * 2
labels = torch.randint(0, N_CLASSES, (512,))
features = centers[labels] + torch.randn(512, IN_DIM)
loader = DataLoader(TensorDataset(features, labels), batch_size=64, shuffle=True)


class Backbone(nn.Module):
    """Stands in for the pretrained ResNet of the thread: a body and an `fc` head."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(IN_DIM, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
        self.fc = nn.Linear(32, PRETRAIN_CLASSES)

    def forward(self, x):
        return self.fc(self.body(x))


class FineTuneModule(L.LightningModule):
    def __init__(self, lr=1e-2):
        super().__init__()
        self.model = Backbone()
        self.lr = lr

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def on_train_epoch_end(self):
        print(f"epoch {self.current_epoch}: loss {self.trainer.callback_metrics['train_loss'].item():.4f}")

    def configure_optimizers(self):
        return torch.optim.Adam(filter(lambda p: p.requires_grad, self.parameters()), lr=self.lr)


class ResNetFineTuner(L.Callback):
    """Freezes the pretrained body and swaps the head for one sized to the new dataset."""

    def __init__(self, num_classes):
        self.num_classes = num_classes

    def setup(self, trainer, pl_module, stage):
        for p in pl_module.model.body.parameters():
            p.requires_grad = False

    def on_fit_start(self, trainer, pl_module):
        old_fc = pl_module.model.fc
        pl_module.model.fc = nn.Linear(old_fc.in_features, self.num_classes)  # root-cause


# %% gradwatch
module = FineTuneModule()
trainer = L.Trainer(max_epochs=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False,
                    callbacks=[ResNetFineTuner(N_CLASSES)])
trainer.fit(module, loader)  # related
with torch.no_grad():
    accuracy = (module(features).argmax(1) == labels).float().mean().item()
print(f"train accuracy {accuracy:.3f}")
