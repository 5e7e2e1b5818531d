# source: https://github.com/pytorch/pytorch/issues/54765
# bug-class: stale-optimizer/model-recreated
# symptom: after switching `net1` to the second architecture the training loss stays exactly where it starts; the first network trained fine with the same loop; no error
# diagnosis: `net1 = Net2()` rebinds the name to a new network after `optimizer` was built over the first network's parameters; the optimizer keeps stepping the old (now unused) parameters and the new ones only accumulate gradients
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(8)


def make_regression(n=256, d=6):
    x = torch.randn(n, d)
    y = torch.sin(x[:, :1] * 2) + 0.5 * x[:, 1:2] * x[:, 2:3] + 0.05 * torch.randn(n, 1)
    return x, y


x_train, y_train = make_regression()
x_val, y_val = make_regression(128)


# %%
class Net(nn.Module):
    def __init__(self, d=6, h=32):
        super().__init__()
        self.fc1 = nn.Linear(d, h)
        self.fc2 = nn.Linear(h, 1)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class Net2(nn.Module):
    """Second structure: wider, with a skip connection."""

    def __init__(self, d=6, h=48):
        super().__init__()
        self.inp = nn.Linear(d, h)
        self.mid = nn.Linear(h, h)
        self.out = nn.Linear(h, 1)

    def forward(self, x):
        h = F.relu(self.inp(x))
        h = h + F.relu(self.mid(h))
        return self.out(h)


def run_epochs(net, optimizer, epochs, tag):
    for epoch in range(epochs):
        perm = torch.randperm(len(x_train))
        for i in range(0, len(perm), 32):
            idx = perm[i:i + 32]
            optimizer.zero_grad()
            loss = F.mse_loss(net(x_train[idx]), y_train[idx])
            loss.backward()
            optimizer.step()  # related
        with torch.no_grad():
            val = F.mse_loss(net(x_val), y_val).item()
        print(f"[{tag}] epoch {epoch}: val mse {val:.4f}")


# %%
net1 = Net()  # 1st network
optimizer = torch.optim.Adam(net1.parameters(), lr=3e-2)
run_epochs(net1, optimizer, 3, "Net")

# %% gradwatch
print("================================================")
net1 = Net2()  # root-cause
run_epochs(net1, optimizer, 4, "Net2")
