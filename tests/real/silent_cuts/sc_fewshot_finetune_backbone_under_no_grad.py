# source: https://github.com/sicara/easy-few-shot-learning/issues/55
# bug-class: silent-cut/no-grad-inner-loop
# symptom: the first episodic training step raises "element 0 of tensors does not require grad and does not have a grad_fn" at loss.backward()
# diagnosis: the transductive fine-tuning classifier computes the backbone features inside `with torch.no_grad():` in `forward` (only the prototypes are adapted, under enable_grad), so the query logits carry no graph back to the backbone that the outer training loop wants to train
# expect-error: RuntimeError
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(55)

N_WAY, N_SHOT, N_QUERY, DIM = 5, 3, 6, 16
CLASS_CENTERS = torch.randn(20, DIM) * 2.0


def sample_episode():
    classes = torch.randperm(CLASS_CENTERS.shape[0])[:N_WAY]
    def draw(k):
        x = CLASS_CENTERS[classes].repeat_interleave(k, 0) + torch.randn(N_WAY * k, DIM)
        return x, torch.arange(N_WAY).repeat_interleave(k)
    support_x, support_y = draw(N_SHOT)
    query_x, query_y = draw(N_QUERY)
    return support_x, support_y, query_x, query_y


# %%
class Backbone(nn.Module):
    def __init__(self, dim, hidden=32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden))

    def forward(self, x):
        return self.net(x)


class TransductiveFinetuner(nn.Module):
    """Few-shot head: starts from class prototypes and fine-tunes them on the episode."""

    def __init__(self, backbone, steps=5, lr=0.05):
        super().__init__()
        self.backbone, self.steps, self.lr = backbone, steps, lr

    def adapt_prototypes(self, support_feats, support_y, query_feats):
        protos = torch.stack([support_feats[support_y == c].mean(0) for c in range(N_WAY)])
        protos = protos.clone().requires_grad_(True)
        with torch.enable_grad():
            for _ in range(self.steps):
                s_logits = -torch.cdist(support_feats, protos)
                q_probs = F.softmax(-torch.cdist(query_feats, protos), dim=1)
                entropy = -(q_probs * q_probs.clamp_min(1e-8).log()).sum(1).mean()
                loss = F.cross_entropy(s_logits, support_y) + entropy
                (g,) = torch.autograd.grad(loss, protos)
                protos = (protos - self.lr * g).detach().requires_grad_(True)
        return protos.detach()

    def forward(self, support_x, support_y, query_x):
        with torch.no_grad():  # root-cause
            support_feats = self.backbone(support_x)
            query_feats = self.backbone(query_x)
            protos = self.adapt_prototypes(support_feats, support_y, query_feats)
            return -torch.cdist(query_feats, protos)


# %% gradwatch
def training_epoch(model, optimizer, n_episodes=20):
    model.train()
    total = 0.0
    for _ in range(n_episodes):
        support_x, support_y, query_x, query_y = sample_episode()
        optimizer.zero_grad()
        loss = F.cross_entropy(model(support_x, support_y, query_x), query_y)
        loss.backward()  # related
        optimizer.step()
        total += loss.item()
    return total / n_episodes


@torch.no_grad()
def evaluate(model, n_episodes=10):
    model.eval()
    correct = 0
    for _ in range(n_episodes):
        support_x, support_y, query_x, query_y = sample_episode()
        correct += (model(support_x, support_y, query_x).argmax(1) == query_y).sum().item()
    return correct / (n_episodes * N_WAY * N_QUERY)


model = TransductiveFinetuner(Backbone(DIM))
optimizer = torch.optim.Adam(model.backbone.parameters(), lr=1e-3)
for epoch in range(3):
    avg_loss = training_epoch(model, optimizer)
    print(f"epoch {epoch}: loss {avg_loss:.3f}  val acc {evaluate(model):.3f}")
