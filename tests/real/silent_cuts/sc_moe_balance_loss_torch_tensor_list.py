# source: https://github.com/laekov/fastmoe/issues/49
# bug-class: silent-cut/torch-tensor-rebuild
# symptom: no error; the load-balancing loss is added to the task loss but never goes down and the gates stay as imbalanced as without it
# diagnosis: the per-layer balance losses are combined with `torch.tensor(loss_list)`, which copies their values into a new leaf tensor (like `.clone().detach()`), so the balance term carries no gradient to the gates; use `torch.stack(loss_list)` / `torch.cat`
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(49)

D_MODEL, N_EXPERTS, N_LAYERS = 16, 4, 2
BALANCE_COEF = 1.0


def make_tokens(n):
    x = torch.randn(n, D_MODEL)
    x[:, 0] += 2.0  # a shared offset that pushes every token towards the same experts
    y = torch.tanh(x[:, :D_MODEL // 2].sum(dim=1, keepdim=True) / 4)
    return x, y


# %%
class MoELayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate = nn.Linear(D_MODEL, N_EXPERTS)
        self.experts = nn.ModuleList(nn.Linear(D_MODEL, D_MODEL) for _ in range(N_EXPERTS))
        self.balance_loss = None
        self.load = None

    def forward(self, x):
        probs = F.softmax(self.gate(x), dim=-1)
        top = probs.argmax(dim=-1)
        out = torch.stack([e(x) for e in self.experts], dim=1)
        out = (out * probs.unsqueeze(-1)).sum(dim=1)
        frac = F.one_hot(top, N_EXPERTS).float().mean(dim=0)
        self.balance_loss = N_EXPERTS * (frac * probs.mean(dim=0)).sum()
        self.load = frac
        return x + torch.relu(out)


class MoEModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(MoELayer() for _ in range(N_LAYERS))
        self.head = nn.Linear(D_MODEL, 1)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


def collect_balance_loss(model):
    loss_list = [layer.balance_loss for layer in model.layers]
    return torch.tensor(loss_list).mean()  # root-cause


# %% gradwatch
model = MoEModel()
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
x_train, y_train = make_tokens(512)

for epoch in range(6):
    for i in range(0, len(x_train), 64):
        optimizer.zero_grad()
        pred = model(x_train[i:i + 64])
        task_loss = F.mse_loss(pred, y_train[i:i + 64])
        bal_loss = collect_balance_loss(model)
        loss = task_loss + BALANCE_COEF * bal_loss
        loss.backward()
        optimizer.step()
    loads = " ".join(f"{f:.2f}" for f in model.layers[0].load.tolist())
    print(f"epoch {epoch}: task {task_loss.item():.4f}  balance {bal_loss.item():.4f}  layer0 load [{loads}]")
