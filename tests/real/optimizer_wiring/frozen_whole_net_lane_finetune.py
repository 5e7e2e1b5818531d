# source: https://github.com/cfzd/Ultra-Fast-Lane-Detection/issues/282
# bug-class: frozen-parameter/freeze-too-broad
# symptom: fine-tuning from the backbone checkpoint fails at the first loss.backward() with "element 0 of tensors does not require grad and does not have a grad_fn"
# diagnosis: the freezing loop runs over `net.parameters()` (the whole lane network, classification head included) instead of `net.model.parameters()` (the backbone), so no parameter requires grad and the loss has no graph
# expect-error: RuntimeError
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(5)

cfg = {"griding_num": 12, "num_row_anchors": 6, "num_lanes": 2, "lr": 0.05, "epochs": 3, "finetune": True}
IMG_H, IMG_W = 24, 48


def make_lane_batch(n):
    """Road images with bright lane strokes; labels are the lane's grid cell on each row anchor."""
    imgs = 0.1 * torch.randn(n, 3, IMG_H, IMG_W)
    labels = torch.full((n, cfg["num_row_anchors"], cfg["num_lanes"]), cfg["griding_num"], dtype=torch.long)
    for i in range(n):
        for lane in range(cfg["num_lanes"]):
            start = torch.randint(2, cfg["griding_num"] - 2, (1,)).item()
            for r in range(cfg["num_row_anchors"]):
                cell = max(0, min(cfg["griding_num"] - 1, start + (r * (1 if lane else -1)) // 2))
                col = cell * IMG_W // cfg["griding_num"]
                row = r * IMG_H // cfg["num_row_anchors"]
                imgs[i, :, row:row + 4, col:col + 4] += 1.0
                labels[i, r, lane] = cell
    return imgs, labels


train_batches = [make_lane_batch(16) for _ in range(6)]


# %%
class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.layer = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU())

    def forward(self, x):
        return self.layer(self.stem(x))


class ParsingNet(nn.Module):
    def __init__(self, griding_num, num_row_anchors, num_lanes):
        super().__init__()
        self.dim = (griding_num + 1, num_row_anchors, num_lanes)
        self.model = Backbone()
        self.pool = nn.Conv2d(32, 4, 1)
        out = self.dim[0] * self.dim[1] * self.dim[2]
        self.cls = nn.Sequential(nn.Linear(4 * 6 * 12, 128), nn.ReLU(), nn.Linear(128, out))

    def forward(self, x):
        fea = self.pool(self.model(x)).flatten(1)
        return self.cls(fea).view(-1, *self.dim)


def load_backbone_only(net, checkpoint):
    state_clip = {k: v for k, v in checkpoint.items() if "model" in k}
    missing = net.load_state_dict(state_clip, strict=False).missing_keys
    print(f"loaded {len(state_clip)} backbone tensors, {len(missing)} head tensors left at init")


pretrained_state = ParsingNet(cfg["griding_num"], cfg["num_row_anchors"], cfg["num_lanes"]).state_dict()

# %% gradwatch
net = ParsingNet(cfg["griding_num"], cfg["num_row_anchors"], cfg["num_lanes"])
if cfg["finetune"]:
    load_backbone_only(net, pretrained_state)
    for param in net.parameters():  # root-cause
        param.requires_grad = False  # root-cause

optimizer = torch.optim.SGD(net.parameters(), lr=cfg["lr"], momentum=0.9)


def train_epoch(net, batches, optimizer, epoch):
    net.train()
    total = 0.0
    for imgs, labels in batches:
        logits = net(imgs)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()  # related
        optimizer.step()
        total += loss.item()
    print(f"epoch {epoch}: loss {total / len(batches):.4f}")


for epoch in range(cfg["epochs"]):
    train_epoch(net, train_batches, optimizer, epoch)
