# source: https://community.deeplearning.ai/t/multiple-linear-regression-housing-prices-problem-cost-too-high/211759
# bug-class: clean/standardized-regression
# symptom: none: the cost starts large (prices are in thousands and are not normalized) and goes down steadily to the noise level
# diagnosis: correct: the features are z-score normalized with the training statistics (also applied to the test set), the target is kept in its own units as an (N, 1) column matching the model's (N, 1) output, and the bias absorbs the price level
# %%
import numpy as np
import torch
import torch.nn as nn

rng = np.random.default_rng(211)
torch.manual_seed(211)


def load_houses(n):
    area = rng.normal(1500, 400, n)
    bedrooms = rng.integers(1, 6, n).astype(float)
    age = rng.uniform(0, 80, n)
    lot = rng.lognormal(8.5, 0.4, n)
    X = np.column_stack([area, bedrooms, age, lot])
    price = 50 + 0.12 * area + 8 * bedrooms - 0.6 * age + 0.004 * lot + rng.normal(0, 10, n)
    return X, price


X_train_raw, y_train_raw = load_houses(400)
X_test_raw, y_test_raw = load_houses(100)

mu, sigma = X_train_raw.mean(axis=0), X_train_raw.std(axis=0)
X_train = torch.tensor((X_train_raw - mu) / sigma, dtype=torch.float32)
X_test = torch.tensor((X_test_raw - mu) / sigma, dtype=torch.float32)
y_train = torch.tensor(y_train_raw, dtype=torch.float32).view(-1, 1)
y_test = torch.tensor(y_test_raw, dtype=torch.float32).view(-1, 1)


# %% gradwatch
model = nn.Linear(X_train.shape[1], 1)
cost_fn = nn.MSELoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

for it in range(200):
    optimizer.zero_grad()
    cost = cost_fn(model(X_train), y_train)
    cost.backward()
    optimizer.step()
    if it % 40 == 0 or it == 199:
        with torch.no_grad():
            test_cost = cost_fn(model(X_test), y_test).item()
        print(f"iteration {it:3d}: train cost {cost.item():10.2f}, test cost {test_cost:10.2f}")

with torch.no_grad():
    new_house = torch.tensor((np.array([[1800, 3, 20, 6000]]) - mu) / sigma, dtype=torch.float32)
    print("predicted price (thousands):", round(model(new_house).item(), 1))
