# source: https://discuss.pytorch.org/t/when-inplace-operation-are-allowed-and-when-not/169583/3
# bug-class: clean/inplace-on-unsaved-tensor
# symptom: none; the in-place edits in forward look risky but backward() works and the classifier trains
# diagnosis: correct: every tensor modified in place is one autograd did not save: the outputs of `nn.Linear`/`Conv1d` (their backward needs the inputs and weights, not the outputs), `BatchNorm1d`'s output before `ReLU(inplace=True)`, and a `10 * x` product
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(23)

SEQ, N_CLASSES, PAD_CLASS = 24, 5, 4


def make_signals(n):
    x = torch.randn(n, 2, SEQ)
    y = ((x[:, 0].mean(1) > 0).long() * 2 + (x[:, 1].std(1) > 1).long()).clamp(max=N_CLASSES - 2)
    return x, y


train_x, train_y = make_signals(192)
val_x, val_y = make_signals(64)


# %%
class SignalNet(nn.Module):
    def __init__(self, width=16):
        super().__init__()
        self.conv = nn.Conv1d(2, width, 5, padding=2)
        self.bn = nn.BatchNorm1d(width)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(width, width)
        self.head = nn.Linear(width, N_CLASSES)
        self.register_buffer("shift", torch.linspace(-0.1, 0.1, width))

    def forward(self, x):
        h = self.conv(x)
        h += 0.5              # conv output is not saved by conv's backward
        h = self.relu(self.bn(h))
        h = h.mean(dim=2)
        z = self.fc(h)
        z += self.shift       # linear output is not saved either
        z = 10 * z
        z.mul_(0.1)           # 10 * z saves neither input nor output
        logits = self.head(F.gelu(z))
        logits[:, PAD_CLASS] = -1e4   # this class never occurs; mask it in place
        return logits


def evaluate(model):
    model.eval()
    with torch.no_grad():
        acc = (model(val_x).argmax(1) == val_y).float().mean().item()
    model.train()
    return acc


# %% gradwatch
def train(model, epochs=5, batch_size=32):
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for epoch in range(epochs):
        for i in range(0, len(train_x), batch_size):
            loss = F.cross_entropy(model(train_x[i:i + batch_size]), train_y[i:i + batch_size])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch} loss {loss.item():.4f} val acc {evaluate(model):.3f}")


train(SignalNet())
