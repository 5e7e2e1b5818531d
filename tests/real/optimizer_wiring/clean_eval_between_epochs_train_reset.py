# source: https://github.com/Na-Z/attMPTI/issues/16
# bug-class: clean/eval-then-train-each-epoch
# symptom: none: a point-cloud segmenter with BatchNorm and Dropout is validated after every epoch and keeps training in training mode
# diagnosis: correct: `evaluate()` switches the model to eval mode, but the pre-training loop calls `model.train()` at the start of every epoch (the fix the issue led to), so no training step runs in eval mode
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(6)
N_POINTS, N_CLASSES = 128, 3


def make_scenes(n):
    """Points of a floor plane (0), a box (1) and a pole (2), with xyz + colour features."""
    pts, lbl = [], []
    for _ in range(n):
        cls = torch.randint(0, N_CLASSES, (N_POINTS,))
        xyz = torch.rand(N_POINTS, 3)
        xyz[cls == 0, 2] = 0.02 * torch.randn(int((cls == 0).sum()))
        xyz[cls == 1] = 0.4 + 0.2 * torch.rand(int((cls == 1).sum()), 3)
        xyz[cls == 2, :2] = 0.8 + 0.03 * torch.randn(int((cls == 2).sum()), 2)
        colour = torch.eye(3)[cls] * 0.5 + 0.3 * torch.randn(N_POINTS, 3)
        pts.append(torch.cat([xyz, colour], dim=1).t())
        lbl.append(cls)
    return torch.stack(pts), torch.stack(lbl)


train_pts, train_lbl = make_scenes(48)
val_pts, val_lbl = make_scenes(16)


class PointNetSeg(nn.Module):
    def __init__(self, in_ch=6, n_classes=N_CLASSES):
        super().__init__()
        self.local = nn.Sequential(nn.Conv1d(in_ch, 32, 1), nn.BatchNorm1d(32), nn.ReLU(),
                                   nn.Conv1d(32, 64, 1), nn.BatchNorm1d(64), nn.ReLU())
        self.seg = nn.Sequential(nn.Conv1d(128, 64, 1), nn.BatchNorm1d(64), nn.ReLU(),
                                 nn.Dropout(0.4), nn.Conv1d(64, n_classes, 1))

    def forward(self, x):
        f = self.local(x)
        g = f.max(dim=2, keepdim=True).values.expand_as(f)
        return self.seg(torch.cat([f, g], dim=1))


def evaluate(model, pts, lbl):
    model.eval()
    with torch.no_grad():
        logits = model(pts)
        loss = F.cross_entropy(logits, lbl).item()
        miou = []
        pred = logits.argmax(1)
        for c in range(N_CLASSES):
            inter = ((pred == c) & (lbl == c)).sum().item()
            union = ((pred == c) | (lbl == c)).sum().item()
            miou.append(inter / max(union, 1))
    return loss, sum(miou) / N_CLASSES


# %% gradwatch
model = PointNetSeg()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)

for epoch in range(5):
    model.train()
    for i in range(0, len(train_pts), 8):
        logits = model(train_pts[i:i + 8])
        loss = F.cross_entropy(logits, train_lbl[i:i + 8])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    scheduler.step()
    val_loss, val_miou = evaluate(model, val_pts, val_lbl)
    print(f"epoch {epoch}: train {loss.item():.4f}  val {val_loss:.4f}  mIoU {val_miou:.3f}")
