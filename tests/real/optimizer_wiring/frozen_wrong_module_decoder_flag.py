# source: https://github.com/torchgeo/terratorch/pull/189
# bug-class: frozen-parameter/wrong-module-frozen
# symptom: with `freeze_decoder=True` the segmentation loss still goes down, but the pretrained encoder's weights stay exactly the same while the decoder (which should be frozen) keeps changing; no error
# diagnosis: the `freeze_decoder` branch of `configure_freezing` calls `requires_grad_(False)` on `model.encoder` instead of `model.decoder`, so the wrong module is frozen (encoder and head instead of decoder and head)
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(21)
N_CLASSES = 3


def make_tiles(n, size=16):
    """Multispectral tiles (4 bands) with blob-shaped classes."""
    x = 0.2 * torch.randn(n, 4, size, size)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        for cls in (1, 2):
            cy, cx = torch.randint(3, size - 3, (2,)).tolist()
            blob = (yy - cy) ** 2 + (xx - cx) ** 2 < 9
            masks[i][blob] = cls
            x[i, cls][blob] += 1.0
    return x, masks


train_x, train_y = make_tiles(32)
val_x, val_y = make_tiles(16)


# %%
class PixelWiseModel(nn.Module):
    def __init__(self, in_ch=4, width=16, n_classes=N_CLASSES):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(in_ch, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 2, stride=2), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Conv2d(width, n_classes, 1)

    def forward(self, x):
        return self.head(self.decoder(self.encoder(x)))


def configure_freezing(model, freeze_encoder=False, freeze_decoder=False):
    if freeze_encoder:
        model.encoder.requires_grad_(False)
    if freeze_decoder:
        model.encoder.requires_grad_(False)  # root-cause
        model.head.requires_grad_(False)


def pretrain_encoder(model, steps=30):
    """Stand-in for loading a pretrained backbone: a short self-supervised warm-up of the encoder."""
    opt = torch.optim.SGD(model.encoder.parameters(), lr=0.05)
    for _ in range(steps):
        feats = model.encoder(train_x)
        loss = (feats.mean(dim=(2, 3)) - 0.5).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.no_grad()
def miou(model, x, y):
    pred = model(x).argmax(dim=1)
    ious = []
    for c in range(N_CLASSES):
        inter = ((pred == c) & (y == c)).sum().item()
        union = ((pred == c) | (y == c)).sum().item()
        ious.append(inter / union if union else 1.0)
    return sum(ious) / len(ious)


model = PixelWiseModel()
pretrain_encoder(model)
# experiment config: fine-tune the pretrained encoder, keep decoder and head fixed
configure_freezing(model, freeze_decoder=True)

# %% gradwatch
trainable = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.Adam(trainable, lr=3e-3)
enc_before = model.encoder[0].weight.detach().clone()
dec_before = model.decoder[2].weight.detach().clone()


def fit(epochs=6, batch_size=16):
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(train_x))
        total = 0.0
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        model.eval()
        print(f"epoch {epoch}: loss {total / 2:.4f}  val mIoU {miou(model, val_x, val_y):.3f}")


fit()
print("encoder changed:", not torch.equal(enc_before, model.encoder[0].weight))  # related
print("decoder changed:", not torch.equal(dec_before, model.decoder[2].weight))
