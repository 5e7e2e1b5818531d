# source: https://github.com/yudi-mars/daisyRec/pull/15
# bug-class: loss/sigmoid-before-bce-with-logits
# symptom: the pointwise recommender's BCE loss stalls at about 0.69 (it can never go below about 0.57) instead of going down; no error
# diagnosis: `NeuMF.forward` returns `torch.sigmoid(...)` and `nn.BCEWithLogitsLoss` applies a sigmoid again, so every score is squeezed into [0.5, 0.73] and the loss cannot converge; return the raw score (logit)
# %%
import numpy as np
import torch
import torch.nn as nn

torch.manual_seed(5)
np.random.seed(5)

N_USERS, N_ITEMS = 60, 80


def build_interactions(n_pos_per_user=8):
    user_taste = np.random.randn(N_USERS, 4)
    item_style = np.random.randn(N_ITEMS, 4)
    affinity = user_taste @ item_style.T
    pos = []
    for u in range(N_USERS):
        for i in np.argsort(-affinity[u])[:n_pos_per_user]:
            pos.append((u, int(i)))
    return pos


def sample_negatives(pos, num_ng=2):
    seen = set(pos)
    rows = []
    for u, i in pos:
        rows.append((u, i, 1.0))
        for _ in range(num_ng):
            j = np.random.randint(N_ITEMS)
            while (u, j) in seen:
                j = np.random.randint(N_ITEMS)
            rows.append((u, j, 0.0))
    arr = np.array(rows)
    return (torch.tensor(arr[:, 0], dtype=torch.long), torch.tensor(arr[:, 1], dtype=torch.long),
            torch.tensor(arr[:, 2], dtype=torch.float32))


class NeuMF(nn.Module):
    def __init__(self, n_users, n_items, factors=16):
        super().__init__()
        self.embed_user_gmf = nn.Embedding(n_users, factors)
        self.embed_item_gmf = nn.Embedding(n_items, factors)
        self.embed_user_mlp = nn.Embedding(n_users, factors)
        self.embed_item_mlp = nn.Embedding(n_items, factors)
        self.mlp = nn.Sequential(nn.Linear(2 * factors, factors), nn.ReLU(), nn.Linear(factors, factors // 2), nn.ReLU())
        self.predict_layer = nn.Linear(factors + factors // 2, 1)
        for emb in (self.embed_user_gmf, self.embed_item_gmf, self.embed_user_mlp, self.embed_item_mlp):
            nn.init.normal_(emb.weight, std=0.1)

    def forward(self, user, item):
        gmf = self.embed_user_gmf(user) * self.embed_item_gmf(item)
        mlp = self.mlp(torch.cat([self.embed_user_mlp(user), self.embed_item_mlp(item)], dim=-1))
        pred = self.predict_layer(torch.cat([gmf, mlp], dim=-1))
        return torch.sigmoid(pred.view(-1))  # root-cause


positives = build_interactions()


# %% gradwatch
def hit_ratio(model, k=10):
    model.eval()
    hits = 0
    with torch.no_grad():
        for u in range(N_USERS):
            scores = model(torch.full((N_ITEMS,), u, dtype=torch.long), torch.arange(N_ITEMS))
            top = set(torch.topk(scores, k).indices.tolist())
            hits += len(top & {i for uu, i in positives if uu == u}) > 0
    return hits / N_USERS


model = NeuMF(N_USERS, N_ITEMS)
criterion = nn.BCEWithLogitsLoss()
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

for epoch in range(5):
    users, items, labels = sample_negatives(positives)
    perm = torch.randperm(len(labels))
    model.train()
    running = 0.0
    n_batches = 0
    for start in range(0, len(labels), 128):
        idx = perm[start:start + 128]
        optimizer.zero_grad()
        prediction = model(users[idx], items[idx])
        loss = criterion(prediction, labels[idx])  # related
        loss.backward()
        optimizer.step()
        running += loss.item()
        n_batches += 1
    print(f"epoch {epoch}: train loss {running / n_batches:.4f}, HR@10 {hit_ratio(model):.3f}")
