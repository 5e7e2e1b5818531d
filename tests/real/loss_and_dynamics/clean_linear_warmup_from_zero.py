# source: https://github.com/google-research/big_transfer/issues/58
# bug-class: clean/lr-warmup-from-zero
# symptom: none: the first optimizer step runs with learning rate 0.0 (by design of the linear warm-up), then the rate ramps up and the loss goes down
# diagnosis: correct: a linear warm-up that starts at step 0 returns lr 0 for the very first step, so that step only fills the momentum buffer; this is intended and harmless
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(58)

N_CLASSES = 5


def make_split(n, protos):
    y = torch.randint(0, N_CLASSES, (n,))
    return protos[y] + 0.6 * torch.randn(n, 3, 8, 8), y


protos = torch.randn(N_CLASSES, 3, 8, 8)
train_x, train_y = make_split(320, protos)
val_x, val_y = make_split(128, protos)


class TinyResNet(nn.Module):
    def __init__(self, width=16):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.block = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                                   nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1))
        self.head = nn.Linear(width, N_CLASSES)

    def forward(self, x):
        h = self.stem(x)
        h = h + self.block(h)
        return self.head(F.adaptive_avg_pool2d(F.relu(h), 1).flatten(1))


def get_lr_factor(step, warmup_steps=20, supports=(60, 90)):
    """BiT-style hyper-rule: linear warm-up from 0, then step decay by 10x."""
    if step < warmup_steps:
        return step / warmup_steps
    factor = 1.0
    for s in supports:
        if step >= s:
            factor *= 0.1
    return factor


# %% gradwatch
model = TinyResNet()
base_lr = 0.05
optimizer = torch.optim.SGD(model.parameters(), lr=base_lr, momentum=0.9)
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=get_lr_factor)


def evaluate():
    model.eval()
    with torch.no_grad():
        return (model(val_x).argmax(1) == val_y).float().mean().item()


step, bs = 0, 32
for epoch in range(10):
    model.train()
    for i in range(0, len(train_x), bs):
        logits = model(train_x[i:i + bs])
        loss = F.cross_entropy(logits, train_y[i:i + bs])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        step += 1
    print(f"epoch {epoch}: step {step}, lr {optimizer.param_groups[0]['lr']:.4f}, "
          f"loss {loss.item():.4f}, val acc {evaluate():.3f}")
