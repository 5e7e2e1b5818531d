# source: https://github.com/pytorch/vision/issues/807
# bug-class: backward-error/inplace-saved-tensor
# symptom: loss.backward() raises "one of the variables needed for gradient computation has been modified by an inplace operation" (a [32, 8, 12, 12] tensor, output 0 of Relu)
# diagnosis: in the pre-activation block `out = self.relu(out)` is followed by `out += identity`; ReLU saves its output for backward and the in-place add overwrites it; write `out = out + identity`
# expect-error: RuntimeError
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(5)


def make_data(n=128, classes=3):
    x = torch.randn(n, 3, 12, 12)
    y = (x[:, 0].mean(dim=(1, 2)) > 0).long() + (x[:, 1].mean(dim=(1, 2)) > 0.1).long()
    return x, y.clamp(max=classes - 1)


train_x, train_y = make_data()
val_x, val_y = make_data(64)


# %% gradwatch
class PreActBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)
        out += identity  # root-cause
        return out


class SmallResNet(nn.Module):
    def __init__(self, width=8, classes=3):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.blocks = nn.Sequential(PreActBlock(width), PreActBlock(width))
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


def evaluate(model):
    model.eval()
    with torch.no_grad():
        acc = (model(val_x).argmax(1) == val_y).float().mean().item()
    model.train()
    return acc


def train(model, epochs=3, batch_size=32):
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(epochs):
        for i in range(0, len(train_x), batch_size):
            loss = F.cross_entropy(model(train_x[i:i + batch_size]), train_y[i:i + batch_size])
            opt.zero_grad()
            loss.backward()  # related
            opt.step()
        print(f"epoch {epoch} loss {loss.item():.4f} val acc {evaluate(model):.3f}")


train(SmallResNet())
