# source: https://github.com/vturrisi/solo-learn/issues/135
# bug-class: clean/compiled-ssl-online-probe-detached
# symptom: none: the compiled self-supervised encoder trains on its own loss and the online linear probe on top learns the labels
# diagnosis: correct: the probe reads `feats.detach()` on purpose, so the label loss trains only the probe and never leaks into the encoder; `.detach()` is not in place, so the SSL projector and encoder still get gradients from the similarity loss of the same features
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(135)

IN_DIM, FEAT_DIM, N_CLASSES = 24, 32, 4


class SimSiamWithProbe(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(IN_DIM, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, FEAT_DIM))
        self.projector = nn.Sequential(nn.Linear(FEAT_DIM, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 32))
        self.predictor = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 32))
        self.classifier = nn.Linear(FEAT_DIM, N_CLASSES)  # online linear probe

    def forward(self, x1, x2):
        f1, f2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(f1), self.projector(f2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        logits = self.classifier(f1.detach())
        return p1, p2, z1, z2, logits


def simsiam_loss(p, z):
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


model = SimSiamWithProbe()
# backend="aot_eager" traces the same graph as inductor and needs no C++ compiler
compiled = torch.compile(model, backend="aot_eager")

centers = 2.0 * torch.randn(N_CLASSES, IN_DIM)
labels = torch.randint(0, N_CLASSES, (512,))
data = centers[labels] + torch.randn(512, IN_DIM)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

# %% gradwatch
compiled.train()
for epoch in range(4):
    for i in range(0, 512, 64):
        x, y = data[i:i + 64], labels[i:i + 64]
        x1, x2 = x + 0.3 * torch.randn_like(x), x + 0.3 * torch.randn_like(x)
        p1, p2, z1, z2, logits = compiled(x1, x2)
        ssl_loss = 0.5 * (simsiam_loss(p1, z2) + simsiam_loss(p2, z1))
        probe_loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        (ssl_loss + probe_loss).backward()
        optimizer.step()
    acc = (logits.argmax(1) == y).float().mean().item()
    print(f"epoch {epoch}: ssl {ssl_loss.item():.4f}  probe {probe_loss.item():.4f}  acc {acc:.2f}")
