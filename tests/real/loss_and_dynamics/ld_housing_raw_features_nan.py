# source: https://thepalindrome.org/p/linear-regression-and-the-exploding-gradients
# bug-class: dynamics/unscaled-features-nan
# symptom: fitting a linear regression on the raw California-housing-like columns with lr=1e-6 gives loss inf after 30 steps and nan weights; with lr=1e-7 the loss only crawls (about 100 after 150 steps); no error
# diagnosis: the feature matrix is used unscaled: the population column (hundreds to tens of thousands) makes its gradient orders of magnitude larger than the others, so any learning rate that moves the other weights blows that one up; standardize the features (zero mean, unit variance) before training
# %%
import numpy as np
import torch
import torch.nn as nn

rng = np.random.default_rng(4)
torch.manual_seed(4)

COLUMNS = ["MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup", "Latitude", "Longitude"]


def load_housing(n=600):
    med_inc = rng.gamma(4.0, 1.0, n)
    house_age = rng.integers(1, 53, n).astype(float)
    ave_rooms = rng.normal(5.4, 1.2, n)
    ave_bedrms = rng.normal(1.1, 0.2, n)
    population = rng.lognormal(7.0, 0.7, n)
    ave_occup = rng.normal(3.0, 0.6, n)
    latitude = rng.uniform(32.5, 42.0, n)
    longitude = rng.uniform(-124.3, -114.3, n)
    features = np.column_stack([med_inc, house_age, ave_rooms, ave_bedrms, population, ave_occup, latitude, longitude])
    value = 0.45 * med_inc + 0.01 * house_age - 0.1 * (latitude - 36) + rng.normal(0, 0.3, n)
    return features, np.clip(value, 0.15, 5.0)


features, target = load_housing()
X = torch.tensor(features, dtype=torch.float32)  # root-cause
y = torch.tensor(target, dtype=torch.float32).view(-1, 1)


# %% gradwatch
class LinearRegression:
    def __init__(self, n_features, lr):
        self.model = nn.Linear(n_features, 1)
        self.loss_fn = nn.MSELoss()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)

    def fit(self, X, y, n_steps=150, log_every=30):
        for step in range(n_steps):
            self.optimizer.zero_grad()
            loss = self.loss_fn(self.model(X), y)
            loss.backward()  # related
            self.optimizer.step()
            if step % log_every == 0:
                print(f"  step {step:3d}: loss {loss.item():.4g}")
        return self


for lr in (1e-6, 1e-7):
    print(f"lr={lr:g}")
    reg = LinearRegression(len(COLUMNS), lr).fit(X, y)
    print("  weights:", [f"{w:.3g}" for w in reg.model.weight.detach().view(-1).tolist()])
