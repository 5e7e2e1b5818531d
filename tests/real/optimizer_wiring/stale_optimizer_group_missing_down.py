# source: https://github.com/ohhhyeahhh/SiamCAR/issues/18
# bug-class: optimizer-coverage/module-missing-from-param-groups
# symptom: the tracker trains and its loss goes down, but the `down` fusion layer keeps its random initial weights for the whole run; no error
# diagnosis: `build_opt_lr` lists param groups for backbone, neck and car_head but not for `model.down`, which sits on the path to the loss, so its parameters get gradients that no optimizer applies; the fix adds a `model.down` group next to the car_head one
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(4)
CH = 6


def make_pairs(n, t=8, s=16):
    """Template patch of a textured target and a search region that contains it at a random offset."""
    targets = torch.randn(n, 3, t, t)
    search = 0.3 * torch.randn(n, 3, s, s)
    offsets = torch.randint(0, s - t + 1, (n, 2))
    for i in range(n):
        oy, ox = offsets[i].tolist()
        search[i, :, oy:oy + t, ox:ox + t] += targets[i]
    template = targets + 0.1 * torch.randn_like(targets)
    return template, search, offsets


train_data = [make_pairs(12) for _ in range(4)]


# %%
class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer2 = nn.Sequential(nn.Conv2d(3, CH, 3, padding=1), nn.ReLU())
        self.layer3 = nn.Sequential(nn.Conv2d(CH, CH, 3, padding=1), nn.ReLU())
        self.layer4 = nn.Sequential(nn.Conv2d(CH, CH, 3, padding=1), nn.ReLU())

    def forward(self, x):
        f2 = self.layer2(x)
        f3 = self.layer3(f2)
        return [f2, f3, self.layer4(f3)]


class AdjustAllLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.downsample = nn.ModuleList([nn.Conv2d(CH, CH, 1) for _ in range(3)])

    def forward(self, feats):
        return [m(f) for m, f in zip(self.downsample, feats)]


class CARHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.tower = nn.Sequential(nn.Conv2d(CH, CH, 3, padding=1), nn.ReLU())
        self.cls_logits = nn.Conv2d(CH, 1, 3, padding=1)

    def forward(self, x):
        return self.cls_logits(self.tower(x))


def xcorr_depthwise(x, kernel):
    b, c = kernel.shape[:2]
    out = F.conv2d(x.reshape(1, b * c, *x.shape[2:]), kernel.reshape(b * c, 1, *kernel.shape[2:]), groups=b * c)
    return out.reshape(b, c, *out.shape[2:])


class ModelBuilder(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.neck = AdjustAllLayer()
        self.down = nn.ConvTranspose2d(CH * 3, CH, 1, 1)
        self.car_head = CARHead()

    def forward(self, template, search):
        zf = self.neck(self.backbone(template))
        xf = self.neck(self.backbone(search))
        features = torch.cat([xcorr_depthwise(x, z) for x, z in zip(xf, zf)], dim=1)
        return self.car_head(self.down(features)).squeeze(1)  # (B, 9, 9) response map


def response_labels(offsets, size=9):
    labels = torch.zeros(len(offsets), size, size)
    labels[torch.arange(len(offsets)), offsets[:, 0], offsets[:, 1]] = 1.0
    return labels


# %%
def build_opt_lr(model, base_lr=0.01, backbone_mult=0.1):
    trainable_params = []
    trainable_params += [{"params": filter(lambda x: x.requires_grad, model.backbone.parameters()),
                          "lr": backbone_mult * base_lr}]
    trainable_params += [{"params": model.neck.parameters(), "lr": base_lr}]
    trainable_params += [{"params": model.car_head.parameters(), "lr": base_lr}]  # root-cause
    optimizer = torch.optim.SGD(trainable_params, momentum=0.9, weight_decay=1e-4)  # root-cause
    return optimizer


model = ModelBuilder()
optimizer = build_opt_lr(model, base_lr=0.02)

# %% gradwatch
down_before = model.down.weight.detach().clone()


def train_epoch(epoch):
    total = 0.0
    for template, search, offsets in train_data:
        response = model(template, search)
        target = response_labels(offsets)
        loss = F.binary_cross_entropy_with_logits(response, target, pos_weight=torch.tensor(20.0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()  # related
        total += loss.item()
    print(f"epoch {epoch}: loss {total / len(train_data):.4f}")


for epoch in range(5):
    train_epoch(epoch)
print("down layer changed:", not torch.equal(down_before, model.down.weight))
