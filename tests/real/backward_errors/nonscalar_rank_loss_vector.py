# source: https://github.com/dillondavis/RecurrentAttentionConvolutionalNeuralNetwork/issues/4
# bug-class: backward-error/non-scalar-loss
# symptom: with batch_size 8 (instead of 1) the rank loss's backward() raises "grad can be implicitly created only for scalar outputs"
# diagnosis: the custom `RankLoss.forward` returns the per-sample hinge `clamp(p1 - p2 + margin, min=0)`, one value per image; it is a scalar only when the batch has one image; reduce it (`.mean()`) in the loss
# expect-error: RuntimeError
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(8)

N_CLASSES = 6


def make_loader(n=64, batch_size=8):
    images = torch.randn(n, 3, 24, 24)
    labels = (images[:, 0, :12, :12].mean(dim=(1, 2)) * 10).long().remainder(N_CLASSES)
    return [(images[i:i + batch_size], labels[i:i + batch_size]) for i in range(0, n, batch_size)]


class ScaleNet(nn.Module):
    """Three scales: full image, centre crop, smaller centre crop (a stand-in for the attention crops)."""

    def __init__(self):
        super().__init__()
        self.backbones = nn.ModuleList([nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()) for _ in range(3)])
        self.heads = nn.ModuleList([nn.Linear(8, N_CLASSES) for _ in range(3)])

    def forward(self, x):
        crops = [x, x[:, :, 4:20, 4:20], x[:, :, 8:16, 8:16]]
        crops = [F.interpolate(c, size=24, mode="bilinear", align_corners=False) for c in crops]
        return [head(net(c)) for c, net, head in zip(crops, self.backbones, self.heads)]


# %%
class RankLoss(nn.Module):
    def __init__(self, margin=0.05):
        super().__init__()
        self.margin = margin

    def forward(self, scores1, scores2, target):
        ps1 = F.softmax(scores1, dim=1).gather(1, target.view(-1, 1))
        ps2 = F.softmax(scores2, dim=1).gather(1, target.view(-1, 1))
        return torch.clamp(ps1 - ps2 + self.margin, min=0).view(-1)  # root-cause


# %% gradwatch
class Manager:
    def __init__(self, model):
        self.model = model
        self.criterion_class = nn.CrossEntropyLoss()
        self.criterion_rank = RankLoss()
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def do_batch(self, batch, label, optimize_class=True):
        self.optimizer.zero_grad()
        scores = self.model(batch)
        if optimize_class:
            loss = sum(self.criterion_class(s, label) for s in scores)
            loss.backward()
        else:
            for i in range(1, len(scores)):
                retain_graph = i < len(scores) - 1
                self.criterion_rank(scores[i - 1], scores[i], label).backward(retain_graph=retain_graph)  # related
        self.optimizer.step()

    def do_epoch(self, loader, optimize_class):
        for batch, label in loader:
            self.do_batch(batch, label, optimize_class)

    def evaluate(self, loader):
        with torch.no_grad():
            correct = sum((self.model(b)[-1].argmax(1) == l).sum().item() for b, l in loader)
        return correct / sum(len(l) for _, l in loader)

    def train(self, loader, epochs=2):
        for epoch in range(epochs):
            self.do_epoch(loader, optimize_class=True)
            print(f"epoch {epoch} class step done, acc {self.evaluate(loader):.3f}")
            self.do_epoch(loader, optimize_class=False)
            print(f"epoch {epoch} rank step done, acc {self.evaluate(loader):.3f}")


Manager(ScaleNet()).train(make_loader())
