# source: https://lightning.ai/docs/pytorch/latest/common/optimization.html
# bug-class: clean/lightning-manual-optimization-gradient-accumulation
# symptom: none: a LightningModule with `automatic_optimization = False` accumulates gradients over several batches and steps a warm-up scheduler itself; the loss goes down
# diagnosis: correct: in manual optimization Lightning leaves `zero_grad`, accumulation and scheduling to the user; `self.manual_backward(loss / N)` runs on every batch, while `opt.step()`, `opt.zero_grad()` and `sch.step()` run only every N-th batch, so backward calls without a step in between are intended
# %%
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
import lightning as L
from torch.utils.data import DataLoader, TensorDataset

warnings.filterwarnings("ignore")
L.seed_everything(2024, verbose=False)

IN_DIM, N_CLASSES, ACCUMULATE = 20, 3, 4
centers = torch.randn(N_CLASSES, IN_DIM) * 1.5
labels = torch.randint(0, N_CLASSES, (256,))
features = centers[labels] + torch.randn(256, IN_DIM)
loader = DataLoader(TensorDataset(features, labels), batch_size=16, shuffle=True)


class AccumulatingClassifier(L.LightningModule):
    def __init__(self, lr=5e-3, warmup_steps=4):
        super().__init__()
        self.automatic_optimization = False
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(IN_DIM, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, N_CLASSES))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        sch = self.lr_schedulers()
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.manual_backward(loss / ACCUMULATE)
        if (batch_idx + 1) % ACCUMULATE == 0:
            self.clip_gradients(opt, gradient_clip_val=1.0, gradient_clip_algorithm="norm")
            opt.step()
            opt.zero_grad()
            sch.step()
        self.log("train_loss", loss, on_step=False, on_epoch=True)

    def on_train_epoch_end(self):
        print(f"epoch {self.current_epoch}: loss {self.trainer.callback_metrics['train_loss'].item():.4f}")

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)
        warmup = self.hparams.warmup_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
        return [optimizer], [scheduler]


# %% gradwatch
model = AccumulatingClassifier()
trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
trainer.fit(model, loader)
model.eval()
with torch.no_grad():
    print(f"train accuracy {(model(features).argmax(1) == labels).float().mean().item():.3f}")
