# source: https://github.com/linkedin/Liger-Kernel/pull/435
# bug-class: clean/vector-loss-explicit-gradient
# symptom: none; the per-sample losses are kept for hard-example logging and the model still trains
# diagnosis: correct: the criterion is built with `reduction='none'` on purpose, and `backward(torch.ones_like(per_sample))` supplies the upstream gradient explicitly, which equals backpropagating `per_sample.sum()`
# %%
import torch
import torch.nn as nn

torch.manual_seed(17)

N_FEATURES, N_CLASSES = 12, 4


def make_data(n):
    x = torch.randn(n, N_FEATURES)
    w = torch.linspace(-1, 1, N_FEATURES * N_CLASSES).view(N_FEATURES, N_CLASSES)
    y = (x @ w + 0.3 * torch.randn(n, N_CLASSES)).argmax(dim=1)
    return x, y


train_x, train_y = make_data(256)
val_x, val_y = make_data(128)

# %%
model = nn.Sequential(nn.Linear(N_FEATURES, 32), nn.ReLU(), nn.Linear(32, N_CLASSES))
criterion = nn.CrossEntropyLoss(reduction="none")
optimizer = torch.optim.SGD(model.parameters(), lr=0.002, momentum=0.9)
hard_counts = torch.zeros(len(train_x), dtype=torch.long)


def accuracy(x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


# %% gradwatch
def train_epoch(batch_size=32, top_k=4):
    for start in range(0, len(train_x), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(train_x)))
        per_sample = criterion(model(train_x[idx]), train_y[idx])
        hardest = per_sample.detach().topk(top_k).indices
        hard_counts[idx[hardest]] += 1
        optimizer.zero_grad()
        per_sample.backward(torch.ones_like(per_sample))
        optimizer.step()
    return per_sample.mean().item()


for epoch in range(6):
    loss = train_epoch()
    print(f"epoch {epoch} last batch loss {loss:.4f} val acc {accuracy(val_x, val_y):.3f}")
print("most often hard examples:", hard_counts.topk(5).indices.tolist())
