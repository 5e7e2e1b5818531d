# source: https://github.com/d2l-ai/d2l-en/pull/2600
# bug-class: silent-cut/data-in-forward
# symptom: no error; the custom layers' weights never change and the model plateaus at what the last nn.Linear alone can fit
# diagnosis: `MyLinear.forward` multiplies by `self.weight.data` and adds `self.bias.data`, which are untracked views of the parameters, so backprop never reaches `MyLinear.weight`/`bias` (their .grad stays None); use `self.weight` and `self.bias`
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(2600)


def synthetic_regression(n, in_dim=20):
    x = torch.randn(n, in_dim)
    y = torch.sin(x[:, :4]).sum(dim=1, keepdim=True) + 0.3 * x[:, 4:5] ** 2
    return x, y


X_train, y_train = synthetic_regression(512)
X_valid, y_valid = synthetic_regression(128)


# %% gradwatch
class MyLinear(nn.Module):
    def __init__(self, in_units, units):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(in_units, units) / in_units ** 0.5)
        self.bias = nn.Parameter(torch.randn(units) * 0.1)

    def forward(self, X):
        linear = torch.matmul(X, self.weight.data) + self.bias.data  # root-cause
        return F.relu(linear)


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden1 = MyLinear(20, 32)
        self.hidden2 = MyLinear(32, 16)
        self.out = nn.Linear(16, 1)

    def forward(self, X):
        return self.out(self.hidden2(self.hidden1(X)))


def evaluate(net):
    with torch.no_grad():
        return F.mse_loss(net(X_valid), y_valid).item()


def train(net, epochs=8, batch_size=64, lr=0.05):
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    w0 = net.hidden1.weight.detach().clone()
    for epoch in range(epochs):
        perm = torch.randperm(len(X_train))
        for i in range(0, len(X_train), batch_size):
            idx = perm[i:i + batch_size]
            optimizer.zero_grad()
            loss = F.mse_loss(net(X_train[idx]), y_train[idx])
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch}: train {loss.item():.4f}  valid {evaluate(net):.4f}")
    moved = (net.hidden1.weight.detach() - w0).abs().max().item()
    print(f"hidden1 weight moved by {moved:.6f}; grad is None: {net.hidden1.weight.grad is None}")


train(Regressor())
