# source: https://github.com/fastai/fastbook/pull/471
# bug-class: backward-error/inplace-leaf-view
# symptom: `weights[0] *= 1.0001` raises "a view of a leaf Variable that requires grad is being used in an in-place operation"
# diagnosis: `weights` is a leaf created with `requires_grad_()`; nudging one entry in place through the view `weights[0]` is refused by autograd; do it on `weights.data` (or under `torch.no_grad()`)
# expect-error: RuntimeError
# %%
import torch

torch.manual_seed(42)


def make_digits(n_per_class=200, size=28 * 28):
    threes = torch.rand(n_per_class, size) * 0.6
    sevens = torch.rand(n_per_class, size) * 0.6
    threes[:, : size // 2] += 0.4
    sevens[:, size // 2:] += 0.4
    x = torch.cat([threes, sevens])
    y = torch.tensor([1] * n_per_class + [0] * n_per_class).unsqueeze(1).float()
    return x, y


train_x, train_y = make_digits()
valid_x, valid_y = make_digits(50)


def init_params(size, std=1.0):
    return (torch.randn(size) * std).requires_grad_()


weights = init_params((28 * 28, 1))
bias = init_params(1)


# %%
def linear1(xb):
    return xb @ weights + bias


def mnist_loss(predictions, targets):
    predictions = predictions.sigmoid()
    return torch.where(targets == 1, 1 - predictions, predictions).mean()


def batch_accuracy(xb, yb):
    preds = xb.sigmoid()
    return ((preds > 0.5).float() == yb).float().mean().item()


def train_epoch(lr, batch_size=64):
    for i in range(0, len(train_x), batch_size):
        xb, yb = train_x[i:i + batch_size], train_y[i:i + batch_size]
        loss = mnist_loss(linear1(xb), yb)
        loss.backward()
        for p in (weights, bias):
            p.data -= p.grad * lr
            p.grad.zero_()


def validate_epoch():
    return round(batch_accuracy(linear1(valid_x), valid_y), 4)


# %% gradwatch
preds = linear1(train_x)
print("accuracy before:", round(((preds > 0.0).float() == train_y).float().mean().item(), 4))

# how does a tiny change of one weight change the accuracy?
weights[0] *= 1.0001  # root-cause
preds = linear1(train_x)
print("accuracy after nudge:", round(((preds > 0.0).float() == train_y).float().mean().item(), 4))

for epoch in range(5):
    train_epoch(lr=1.0)
    print(f"epoch {epoch} valid acc {validate_epoch()}")
