# source: https://signalsurgeon.com/how-to-fix-vanishing-gradients-using-the-rectified-linear-activation-function/
# bug-class: dynamics/vanishing-gradient-tanh
# symptom: the 10-hidden-layer tanh MLP on the two-circles problem stays at about 50% accuracy with the loss flat at 0.688 for all 40 epochs; no error
# diagnosis: the hidden layers use `nn.Tanh()` with weights initialized uniformly in [0, 1]: every unit saturates, tanh' is close to 0, and the gradient reaching the first layers vanishes through the stack; use ReLU with He (kaiming) initialization
# %%
import math

import numpy as np
import torch
import torch.nn as nn

rng = np.random.default_rng(1)
torch.manual_seed(1)


def make_circles(n=500, noise=0.1, factor=0.5):
    n_out = n // 2
    t_out = rng.uniform(0, 2 * math.pi, n_out)
    t_in = rng.uniform(0, 2 * math.pi, n - n_out)
    outer = np.column_stack([np.cos(t_out), np.sin(t_out)])
    inner = factor * np.column_stack([np.cos(t_in), np.sin(t_in)])
    X = np.vstack([outer, inner]) + rng.normal(0, noise, (n, 2))
    y = np.hstack([np.zeros(n_out), np.ones(n - n_out)])
    X = 2 * (X - X.min(0)) / (X.max(0) - X.min(0)) - 1
    idx = rng.permutation(n)
    return torch.tensor(X[idx], dtype=torch.float32), torch.tensor(y[idx], dtype=torch.float32)


X, y = make_circles()
n_train = 250
trainX, trainy, testX, testy = X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def define_model(n_hidden_layers=10, width=8):
    layers, fan_in = [], 2
    for _ in range(n_hidden_layers):
        linear = nn.Linear(fan_in, width)
        nn.init.uniform_(linear.weight, 0.0, 1.0)  # root-cause
        layers += [linear, nn.Tanh()]  # root-cause
        fan_in = width
    out = nn.Linear(fan_in, 1)
    nn.init.uniform_(out.weight, 0.0, 1.0)
    layers.append(out)
    return nn.Sequential(*layers)


# %% gradwatch
def evaluate(model, X, y):
    with torch.no_grad():
        return ((model(X).squeeze(1) > 0).float() == y).float().mean().item()


def fit(model, epochs=40, batch_size=50):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.BCEWithLogitsLoss()
    for epoch in range(epochs):
        for i in range(0, n_train, batch_size):
            opt.zero_grad()
            loss = loss_fn(model(trainX[i:i + batch_size]).squeeze(1), trainy[i:i + batch_size])
            loss.backward()  # related
            opt.step()
        if epoch % 10 == 9:
            print(f"epoch {epoch + 1}: loss {loss.item():.4f}, train acc {evaluate(model, trainX, trainy):.3f}, "
                  f"test acc {evaluate(model, testX, testy):.3f}")


fit(define_model())
