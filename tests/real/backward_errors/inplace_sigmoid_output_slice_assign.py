# source: https://github.com/pytorch/pytorch/issues/9391
# bug-class: backward-error/inplace-saved-tensor
# symptom: loss.backward() raises "one of the variables needed for gradient computation has been modified by an inplace operation" (output 0 of Sigmoid)
# diagnosis: `forward` writes into a slice of the sigmoid's output (`boxes[:, 2:] = ...`); sigmoid saves its output for backward, so the slice assignment invalidates it; build the result out of place (`torch.cat`)
# expect-error: RuntimeError
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(21)


def make_scenes(n):
    feats = torch.randn(n, 20)
    cx = torch.sigmoid(feats[:, 0])
    cy = torch.sigmoid(feats[:, 1])
    w = 0.1 + 0.3 * torch.sigmoid(feats[:, 2])
    h = 0.1 + 0.3 * torch.sigmoid(feats[:, 3])
    boxes = torch.stack([cx, cy, w, h], dim=1)
    labels = (feats[:, 4] > 0).long()
    return feats, boxes, labels


train_set = make_scenes(256)
val_set = make_scenes(64)


# %%
class BoxHead(nn.Module):
    def __init__(self, in_dim=20, hidden=32, max_size=0.5):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.box = nn.Linear(hidden, 4)
        self.cls = nn.Linear(hidden, 2)
        self.max_size = max_size

    def forward(self, x):
        h = self.trunk(x)
        boxes = torch.sigmoid(self.box(h))
        boxes[:, 2:] = boxes[:, 2:] * self.max_size  # root-cause
        return boxes, self.cls(h)


def box_loss(pred, target):
    return F.smooth_l1_loss(pred, target)


def evaluate(model, data):
    feats, boxes, labels = data
    with torch.no_grad():
        pred_boxes, logits = model(feats)
    return box_loss(pred_boxes, boxes).item(), (logits.argmax(1) == labels).float().mean().item()


# %% gradwatch
def train(model, epochs=4, batch_size=32):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    feats, boxes, labels = train_set
    for epoch in range(epochs):
        for i in range(0, len(feats), batch_size):
            pred_boxes, logits = model(feats[i:i + batch_size])
            loss = box_loss(pred_boxes, boxes[i:i + batch_size]) + F.cross_entropy(logits, labels[i:i + batch_size])
            optimizer.zero_grad()
            loss.backward()  # related
            optimizer.step()
        vb, va = evaluate(model, val_set)
        print(f"epoch {epoch} train {loss.item():.4f} val box {vb:.4f} val acc {va:.3f}")


train(BoxHead())
