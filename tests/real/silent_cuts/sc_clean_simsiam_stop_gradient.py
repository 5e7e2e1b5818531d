# source: https://github.com/PatrickHua/SimSiam/issues/22
# bug-class: clean/stop-gradient-branch
# symptom: none; the symmetric negative-cosine loss falls towards -1 and the representation does not collapse
# diagnosis: correct: SimSiam's stop-gradient is `z.detach()` inside the loss D(p, z); the encoder still gets gradient through the other branch (p = predictor(encoder(x))) of the symmetric loss
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(22)

IN_DIM, PROJ_DIM, PRED_DIM = 32, 16, 8


def make_views(n):
    base = torch.randn(n, IN_DIM)
    aug = lambda x: x * (1 + 0.1 * torch.randn_like(x)) + 0.1 * torch.randn_like(x)
    return aug(base), aug(base)


def D(p, z):
    # negative cosine similarity with stop gradient on z
    z = z.detach()
    p = F.normalize(p, dim=1)
    z = F.normalize(z, dim=1)
    return -(p * z).sum(dim=1).mean()


# %%
class SimSiam(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(IN_DIM, 64), nn.BatchNorm1d(64), nn.ReLU(),
                                     nn.Linear(64, PROJ_DIM), nn.BatchNorm1d(PROJ_DIM))
        self.predictor = nn.Sequential(nn.Linear(PROJ_DIM, PRED_DIM), nn.BatchNorm1d(PRED_DIM), nn.ReLU(),
                                       nn.Linear(PRED_DIM, PROJ_DIM))

    def forward(self, x1, x2):
        z1, z2 = self.encoder(x1), self.encoder(x2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        return D(p1, z2) / 2 + D(p2, z1) / 2, z1


def feature_std(z):
    return F.normalize(z, dim=1).std(dim=0).mean().item()


model = SimSiam()
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)


# %% gradwatch
for epoch in range(5):
    x1_all, x2_all = make_views(512)
    for i in range(0, 512, 64):
        loss, z1 = model(x1_all[i:i + 64], x2_all[i:i + 64])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch}: loss {loss.item():.4f}  per-dim std of normalized z {feature_std(z1):.4f}")
