# source: https://discuss.pytorch.org/t/torch-round-gradient/28628/4
# bug-class: silent-cut/round-in-loss
# symptom: the training loss stays exactly flat over all epochs and the weights never change; no error
# diagnosis: `torch.round(...)` on the predicted counts in `train_one_epoch` is a step function whose gradient is zero everywhere, so every parameter of `DemandNet` gets a zero gradient; round only when reporting, not in the loss
# %%
import torch
import torch.nn as nn

torch.manual_seed(28628)

N_FEATURES = 6


def make_data(n, n_features=N_FEATURES):
    """Synthetic daily rental counts driven by weather/calendar features."""
    x = torch.randn(n, n_features)
    true_w = torch.tensor([1.5, -0.8, 0.6, 0.0, 2.0, -1.2])
    rate = torch.nn.functional.softplus(x @ true_w + 1.0) * 4.0
    counts = torch.poisson(rate)
    return x, counts.unsqueeze(1)


train_x, train_y = make_data(512)
val_x, val_y = make_data(128)


# %%
class DemandNet(nn.Module):
    def __init__(self, n_features, hidden=32):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        return nn.functional.softplus(self.head(self.body(x)))


def batches(x, y, batch_size=64):
    perm = torch.randperm(x.shape[0])
    for i in range(0, x.shape[0], batch_size):
        idx = perm[i:i + batch_size]
        yield x[idx], y[idx]


# %% gradwatch
def train_one_epoch(model, optimizer, criterion, x, y):
    model.train()
    total = 0.0
    for xb, yb in batches(x, y):
        optimizer.zero_grad()
        pred_counts = torch.round(model(xb))  # root-cause
        loss = criterion(pred_counts, yb)
        loss.backward()
        optimizer.step()  # related
        total += loss.item() * xb.shape[0]
    return total / x.shape[0]


@torch.no_grad()
def evaluate(model, x, y):
    model.eval()
    pred = torch.round(model(x))
    return (pred - y).abs().mean().item()


model = DemandNet(N_FEATURES)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
criterion = nn.MSELoss()
head_before = model.head.weight.detach().clone()

for epoch in range(8):
    train_loss = train_one_epoch(model, optimizer, criterion, train_x, train_y)
    val_mae = evaluate(model, val_x, val_y)
    print(f"epoch {epoch}: train mse {train_loss:.3f}  val mae {val_mae:.3f}")

print("head weight changed:", not torch.equal(head_before, model.head.weight))
