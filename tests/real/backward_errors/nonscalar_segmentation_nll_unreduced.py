# source: https://github.com/pytorch/pytorch/issues/6166
# bug-class: backward-error/non-scalar-loss
# symptom: loss.backward() raises "grad can be implicitly created only for scalar outputs"
# diagnosis: `criterion` is an `NLLLoss` that does not reduce (the issue's `reduce=False`, today `reduction='none'`), so on a (batch, classes, H, W) log-softmax map it returns a (batch, H, W) loss map; keep the default mean reduction or reduce the map before backward
# expect-error: RuntimeError
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(6)

NUM_CLASSES = 3
H = W = 16


def make_scenes(n):
    images = torch.rand(n, 3, H, W)
    labels = torch.zeros(n, H, W, dtype=torch.long)
    labels[images[:, 0] > 0.6] = 1
    labels[images[:, 1] > 0.7] = 2
    return images, labels


train_images, train_labels = make_scenes(48)
val_images, val_labels = make_scenes(16)


class TinyFCN(nn.Module):
    def __init__(self, num_classes=NUM_CLASSES):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.ReLU(),
        )
        self.classifier = nn.Conv2d(16, num_classes, 1)

    def forward(self, x):
        return self.classifier(self.features(x))


# %%
model = TinyFCN()
logsoftmax = nn.LogSoftmax(dim=1)
criterion = torch.nn.NLLLoss(reduction="none")  # root-cause
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def mean_iou(pred, target):
    ious = []
    for c in range(NUM_CLASSES):
        inter = ((pred == c) & (target == c)).sum().item()
        union = ((pred == c) | (target == c)).sum().item()
        if union:
            ious.append(inter / union)
    return sum(ious) / len(ious)


def validate():
    model.eval()
    with torch.no_grad():
        pred = model(val_images).argmax(1)
    model.train()
    return mean_iou(pred, val_labels)


# %% gradwatch
for epoch in range(3):
    for i in range(0, len(train_images), 8):
        outputs = model(train_images[i:i + 8])
        outputs = logsoftmax(outputs)
        loss = criterion(outputs, train_labels[i:i + 8])
        optimizer.zero_grad()
        loss.backward()  # related
        optimizer.step()
    print(f"epoch {epoch} val mIoU {validate():.3f}")
