# source: https://github.com/dingmyu/CamNet/pull/4
# bug-class: loss/broadcast-shape-mismatch
# symptom: "Using a target size (torch.Size([16, 3])) that is different to the input size (torch.Size([16, 3, 1, 1]))" warnings; the translation and rotation L1 losses level off at the spread of the labels instead of going down; no error
# diagnosis: the pose heads return `[BS, 3, 1, 1]` / `[BS, 4, 1, 1]` (1x1-conv output after global pooling, never flattened), so `nn.L1Loss` against `[BS, 3]` / `[BS, 4]` labels broadcasts to `[BS, 3, BS, 3]` and compares every sample with every label; flatten the head outputs to `[BS, 3]` / `[BS, 4]`
# %%
import torch
import torch.nn as nn

torch.manual_seed(21)


def make_pairs(n=96, size=12):
    translation = torch.randn(n, 3)
    rotation = nn.functional.normalize(torch.randn(n, 4), dim=1)
    base = torch.randn(n, 3, size, size)
    ramp = torch.linspace(-1, 1, size)
    shifted = base + translation[:, :, None, None] * ramp[None, None, :, None] \
        + rotation[:, :3, None, None] * ramp[None, None, None, :]
    return torch.cat([base, shifted], dim=1), translation, rotation


class RelativePoseNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(6, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc_trans = nn.Conv2d(32, 3, 1)
        self.fc_rot = nn.Conv2d(32, 4, 1)

    def forward(self, pair):
        feat = self.backbone(pair)
        trans = self.fc_trans(feat)  # root-cause
        rot = self.fc_rot(feat)  # root-cause
        return trans, rot


train_pairs, train_t, train_q = make_pairs()
val_pairs, val_t, val_q = make_pairs(64)


# %% gradwatch
l1 = nn.L1Loss()


def pose_loss(trans, rot, translation_var, rotation_var, beta=1.0):
    loss_t = l1(trans, translation_var)  # related
    loss_r = l1(rot, rotation_var)  # related
    return loss_t + beta * loss_r, loss_t, loss_r


def run_epoch(model, optimizer, bs=16):
    model.train()
    for i in range(0, len(train_pairs), bs):
        trans, rot = model(train_pairs[i:i + bs])
        loss, _, _ = pose_loss(trans, rot, train_t[i:i + bs], train_q[i:i + bs])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def validate(model):
    model.eval()
    with torch.no_grad():
        trans, rot = model(val_pairs)
        _, loss_t, loss_r = pose_loss(trans, rot, val_t, val_q)
    return loss_t.item(), loss_r.item()


model = RelativePoseNet()
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
for epoch in range(6):
    run_epoch(model, optimizer)
    lt, lr_ = validate(model)
    print(f"epoch {epoch}: val L1 translation {lt:.3f}, rotation {lr_:.3f}")
