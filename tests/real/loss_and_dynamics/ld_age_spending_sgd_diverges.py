# source: https://github.com/pytorch/pytorch/issues/149827
# bug-class: dynamics/unscaled-features-divergence
# symptom: the MSE of a one-feature linear regression grows by orders of magnitude every epoch, reaches inf and then prints nan; the prediction for a new age is nan; no error
# diagnosis: the ages (65-100) go into `nn.Linear` unscaled, so with plain SGD at lr=0.001 every step overshoots (the curvature is about 2*mean(age^2), roughly 13000) and the weights oscillate with growing amplitude; standardize the ages (and the spending) or use a much smaller learning rate
# %%
import torch
import torch.nn as nn
import torch.optim as optim

torch.manual_seed(1)


def make_customers(n=40):
    ages = torch.randint(65, 101, (n, 1)).float()
    spending = 10.0 * ages - 450.0 + torch.randn(n, 1) * 15.0
    return ages, spending


ages, spendings = make_customers()
features = ages  # root-cause
targets = spendings


class SpendingModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, x):
        return self.linear(x)


# %% gradwatch
def fit(model, x, y, num_epochs=200, lr=0.001):
    criterion = nn.MSELoss()
    optimizer = optim.SGD(model.parameters(), lr=lr)
    for epoch in range(num_epochs):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()  # related
        if epoch < 12 and epoch % 3 == 0 or (epoch + 1) % 50 == 0:
            print(f"epoch {epoch + 1}/{num_epochs}: loss {loss.item():.4g}")
    return model


model = fit(SpendingModel(), features, targets)
model.eval()
with torch.no_grad():
    print("predicted spending at 77:", model(torch.tensor([[77.0]])).item())
