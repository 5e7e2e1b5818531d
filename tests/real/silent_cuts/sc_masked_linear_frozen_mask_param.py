# source: https://github.com/uchida-takumi/CustomizedLinear/issues/2
# bug-class: none-grad/frozen-parameter-in-manual-update
# symptom: TypeError: unsupported operand type(s) for *: 'float' and 'NoneType' in the hand-written SGD update over model.parameters()
# diagnosis: the connection mask is registered as an `nn.Parameter(..., requires_grad=False)`, so `model.parameters()` yields it but it never gets a `.grad`; the manual update must skip it (or the mask must be a buffer)
# expect-error: TypeError
# %%
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(11)

N_IN, N_HIDDEN, N_OUT = 6, 4, 1


def make_mask(n_in, n_out, density=0.5):
    mask = (torch.rand(n_in, n_out) < density).float()
    mask[torch.arange(min(n_in, n_out)), torch.arange(min(n_in, n_out))] = 1.0
    return mask


def make_data(n):
    x = torch.randn(n, N_IN)
    y = (x[:, :3].sum(dim=1, keepdim=True) - 0.5 * x[:, 3:4]).tanh()
    return x, y


# %%
class MaskedLinear(nn.Module):
    """Linear layer whose connections are switched on and off by a fixed 0/1 mask."""

    def __init__(self, mask, bias=True):
        super().__init__()
        self.in_features, self.out_features = mask.shape
        self.mask = nn.Parameter(mask.t(), requires_grad=False)  # root-cause
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features))
        self.bias = nn.Parameter(torch.empty(self.out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.in_features)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            self.weight.mul_(self.mask)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound)

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


model = nn.Sequential(
    MaskedLinear(make_mask(N_IN, N_HIDDEN)),
    nn.Tanh(),
    MaskedLinear(make_mask(N_HIDDEN, N_OUT, density=1.0)),
)
x_train, y_train = make_data(128)
x_test, y_test = make_data(64)


# %% gradwatch
def test_loss():
    with torch.no_grad():
        return F.mse_loss(model(x_test), y_test).item()


learning_rate = 0.05
for epoch in range(30):
    model.zero_grad()
    loss = F.mse_loss(model(x_train), y_train)
    loss.backward()

    # Update the weights
    with torch.no_grad():
        for param in model.parameters():
            param -= learning_rate * param.grad  # related

    if epoch % 10 == 0:
        print(f"epoch {epoch:2d}  train {loss.item():.4f}  test {test_loss():.4f}")
