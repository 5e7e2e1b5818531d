# source: https://github.com/wkentaro/pytorch-fcn/pull/56
# bug-class: eval-mode/left-on-after-evaluation
# symptom: the first validation happens mid-epoch; every iteration after it, until the next epoch starts, trains with Dropout2d off and BatchNorm frozen to its running statistics (the logged mode flips to eval); no error
# diagnosis: `Trainer.validate` switches the network to `eval()` and never restores the previous mode, while `train_epoch` calls `model.train()` only once per epoch; the fix (d10dd30) remembers `model.training` before `self.model.eval()` and switches back at the end of `validate`
# %%
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(12)
N_CLASS = 3


def make_scenes(n, size=16):
    """Images with a bright square (class 1) and a dark disc (class 2) on a noisy background."""
    imgs = 0.3 * torch.randn(n, 3, size, size)
    lbl = torch.zeros(n, size, size, dtype=torch.long)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for i in range(n):
        y0, x0 = torch.randint(0, size - 5, (2,)).tolist()
        imgs[i, :, y0:y0 + 5, x0:x0 + 5] += 1.0
        lbl[i, y0:y0 + 5, x0:x0 + 5] = 1
        cy, cx = torch.randint(3, size - 3, (2,)).tolist()
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 6
        imgs[i, :, disc] -= 1.0
        lbl[i, disc] = 2
    return imgs, lbl


train_imgs, train_lbls = make_scenes(96)
val_imgs, val_lbls = make_scenes(32)


class FCN8sTiny(nn.Module):
    def __init__(self, n_class=N_CLASS):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.Dropout2d(0.3))
        self.score = nn.Conv2d(32, n_class, 1)
        self.upscore = nn.ConvTranspose2d(n_class, n_class, 4, stride=2, padding=1, bias=False)

    def forward(self, x):
        return self.upscore(self.score(self.conv2(self.conv1(x))))


# %%
class Trainer:
    def __init__(self, model, optimizer, interval_validate=4, batch_size=8):
        self.model = model
        self.optim = optimizer
        self.interval_validate = interval_validate
        self.batch_size = batch_size
        self.epoch = 0
        self.iteration = 0
        self.mode_log = []

    def validate(self):
        self.model.eval()  # root-cause
        with torch.no_grad():
            score = self.model(val_imgs)
            val_loss = F.cross_entropy(score, val_lbls).item()
            acc = (score.argmax(1) == val_lbls).float().mean().item()
        print(f"  [validate] epoch {self.epoch} iter {self.iteration}: loss {val_loss:.4f} pixel acc {acc:.3f}")

    def train_epoch(self):
        self.model.train()
        n_batches = math.ceil(len(train_imgs) / self.batch_size)
        for batch_idx in range(n_batches):
            self.iteration = batch_idx + self.epoch * n_batches
            if self.iteration % self.interval_validate == 0 and self.iteration > 0:
                self.validate()
            sl = slice(batch_idx * self.batch_size, (batch_idx + 1) * self.batch_size)
            score = self.model(train_imgs[sl])
            loss = F.cross_entropy(score, train_lbls[sl])
            self.optim.zero_grad()
            loss.backward()
            self.optim.step()  # related
            self.mode_log.append("T" if self.model.training else "e")

    def train(self, max_epoch):
        for epoch in range(max_epoch):
            self.epoch = epoch
            self.train_epoch()
            print(f"epoch {epoch} modes: {''.join(self.mode_log[-12:])}")


# %% gradwatch
model = FCN8sTiny()
optim = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
trainer = Trainer(model, optim, interval_validate=5)
trainer.train(max_epoch=3)
