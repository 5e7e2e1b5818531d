# source: https://discuss.pytorch.org/t/different-learning-rate-for-different-type-of-module/8999/3
# bug-class: clean/param-groups-different-lr
# symptom: none: the pretrained base is fine-tuned gently while the new classifier learns fast; both change and the loss goes down
# diagnosis: correct: the optimizer gets two param groups, `model.base` at the default lr and `model.classifier` with its own lr; together they cover every parameter of the model, and a LambdaLR warm-up scales both
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(3)


class AudioTagger(nn.Module):
    def __init__(self, n_tags=6, n_mels=20):
        super().__init__()
        self.base = nn.Sequential(
            nn.Conv1d(n_mels, 32, 3, padding=1), nn.BatchNorm1d(32), nn.ReLU(),
            nn.Conv1d(32, 32, 3, padding=1), nn.BatchNorm1d(32), nn.ReLU(),
            nn.AdaptiveMaxPool1d(1), nn.Flatten(),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, n_tags))

    def forward(self, x):
        return self.classifier(self.base(x))


def make_clips(n, signatures, frames=40):
    n_tags, n_mels = signatures.shape[:2]
    tags = (torch.rand(n, n_tags) < 0.3).float()
    clips = 0.5 * torch.randn(n, n_mels, frames) + torch.einsum("nt,tmf->nmf", tags, signatures)
    return clips, tags


def pretrain_base(model, steps=20):
    """Stand-in for pretrained weights: a short warm-up on a different tagging task."""
    x, y = make_clips(128, torch.randn(6, 20, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(model(x), y).backward()
        opt.step()


model = AudioTagger()
pretrain_base(model)
model.classifier[1] = nn.Linear(32, 6)  # new task head, built before the optimizer below
target_signatures = torch.randn(6, 20, 1)
train_x, train_y = make_clips(256, target_signatures)
val_x, val_y = make_clips(64, target_signatures)

# %%
optimizer = torch.optim.SGD([
    {"params": model.base.parameters()},
    {"params": model.classifier.parameters(), "lr": 1e-1},
], lr=1e-2, momentum=0.9)
warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lambda step: min(1.0, (step + 1) / 10))

# %% gradwatch
base_before = model.base[0].weight.detach().clone()
for epoch in range(4):
    model.train()
    for i in range(0, len(train_x), 32):
        logits = model(train_x[i:i + 32])
        loss = F.binary_cross_entropy_with_logits(logits, train_y[i:i + 32])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        warmup.step()
    model.eval()
    with torch.no_grad():
        val_loss = F.binary_cross_entropy_with_logits(model(val_x), val_y).item()
    lrs = [round(g["lr"], 4) for g in optimizer.param_groups]
    print(f"epoch {epoch}: train {loss.item():.4f}  val {val_loss:.4f}  lrs {lrs}")
print("base moved by", round((model.base[0].weight - base_before).abs().max().item(), 4))
