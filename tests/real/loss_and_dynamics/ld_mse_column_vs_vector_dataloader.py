# source: https://github.com/pytorch/pytorch/issues/16045
# bug-class: loss/broadcast-shape-mismatch
# symptom: "Using a target size (torch.Size([32])) that is different to the input size (torch.Size([32, 1]))" warning; the MSE stays near the target variance and the fit never improves; no error
# diagnosis: the DataLoader yields targets of shape (N,) while the model returns (N, 1), so `loss_func(model(xb), yb)` broadcasts to an (N, N) matrix of all pairwise differences; build the targets as a column (`.view(-1, 1)`) or squeeze the prediction
# %%
import numpy as np
import torch
import torch.nn as nn
from torch import optim
from torch.utils.data import DataLoader, TensorDataset

np.random.seed(0)
torch.manual_seed(0)


TRUE_W = np.random.randn(6).astype(np.float32)


def make_arrays(n=512, d=6):
    X = np.random.randn(n, d).astype(np.float32)
    y = X @ TRUE_W + 0.1 * np.random.randn(n).astype(np.float32)
    return X, y


X_train, y_train = make_arrays()
X_valid, y_valid = make_arrays(128)
train_ds = TensorDataset(torch.from_numpy(X_train), torch.from_numpy(y_train))  # root-cause
valid_ds = TensorDataset(torch.from_numpy(X_valid), torch.from_numpy(y_valid))  # root-cause
train_dl = DataLoader(train_ds, batch_size=32, shuffle=True)
valid_dl = DataLoader(valid_ds, batch_size=64)

model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 1))


# %% gradwatch
def train_epoch(model, dl, opt, loss_func):
    "Simple training of `model` for 1 epoch of `dl` using optim `opt` and loss function `loss_func`."
    model.train()
    for xb, yb in dl:
        loss = loss_func(model(xb), yb)  # related
        loss.backward()
        opt.step()
        opt.zero_grad()


def validate(model, dl, loss_func):
    model.eval()
    with torch.no_grad():
        losses = [loss_func(model(xb), yb).item() * len(xb) for xb, yb in dl]
    return sum(losses) / len(dl.dataset)


loss_func = nn.MSELoss()
opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
for epoch in range(8):
    train_epoch(model, train_dl, opt, loss_func)
    print(f"epoch {epoch}: valid mse {validate(model, valid_dl, loss_func):.4f}")
