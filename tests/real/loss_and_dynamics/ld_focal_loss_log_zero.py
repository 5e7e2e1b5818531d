# source: https://github.com/mathiaszinnen/focal_loss_torch/issues/3
# bug-class: numerics/log-of-zero
# symptom: the focal loss trains normally for a while, then one batch gives loss inf and from then on every loss and weight is nan; no error
# diagnosis: `FocalLoss.forward` takes `torch.log(p_t)` of sigmoid probabilities; once the model is confident (logit above ~17) on a mislabelled sample, `1 - p` rounds to exactly 0 in float32, so `log(p_t)` is -inf and the gradient nan; add a small epsilon inside the log (or compute it from the logits with `F.logsigmoid`)
# %%
import torch
import torch.nn as nn

torch.manual_seed(9)


def make_defects(n=256, size=10, flip=0.05):
    labels = (torch.rand(n) < 0.3).long()
    x = torch.randn(n, 1, size, size) * 0.5
    x[labels == 1, :, 3:7, 3:7] += 2.0
    noisy = labels.clone()
    flip_idx = torch.rand(n) < flip
    noisy[flip_idx] = 1 - noisy[flip_idx]
    return x, noisy


class FocalLoss(nn.Module):
    def __init__(self, gamma=2.0, weights=None):
        super().__init__()
        self.gamma = gamma
        self.weights = weights

    def forward(self, x, target):
        p_t = torch.where(target == 1, x, 1 - x)
        w = 1.0 if self.weights is None else self.weights[target]
        fl = -1 * w * (1 - p_t) ** self.gamma * torch.log(p_t)  # root-cause
        return fl.mean()


class DefectNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Linear(8 * 5 * 5, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x):
        return self.head(self.features(x).flatten(1)).squeeze(1)


train_x, train_y = make_defects()
m = nn.Sigmoid()


# %% gradwatch
def train(model, criterion, optimizer, epochs=6, bs=32):
    for epoch in range(epochs):
        model.train()
        losses = []
        for i in range(0, len(train_x), bs):
            optimizer.zero_grad()
            loss = criterion(m(model(train_x[i:i + bs])), train_y[i:i + bs])  # related
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        with torch.no_grad():
            max_logit = model(train_x).abs().max().item()
        print(f"epoch {epoch}: mean loss {sum(losses) / len(losses):.4f}, max |logit| {max_logit:.1f}")


model = DefectNet()
criterion = FocalLoss(gamma=2.0, weights=torch.tensor([0.4, 1.0]))
train(model, criterion, torch.optim.Adam(model.parameters(), lr=0.1))
