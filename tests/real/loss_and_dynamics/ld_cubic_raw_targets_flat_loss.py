# source: https://discuss.pytorch.org/t/neural-network-could-not-learn-on-this-type-of-data-why/96648/5
# bug-class: dynamics/flat-loss-target-scale
# symptom: the MSE stays at 5.82e20 for all 300 epochs and the predictions stay in the thousands while the targets reach 6.4e10; the network "does not learn"; no error
# diagnosis: input (1-4000) and target (x**3, up to 6.4e10) are fed raw: with Adam at lr=1e-3 every step moves the weights by ~1e-3, which changes predictions by a negligible amount relative to targets of 1e10, so the loss is flat; normalize the input and the target (and un-normalize the predictions afterwards)
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)


class Network(nn.Module):
    def __init__(self, hidden=50):
        super().__init__()
        self.fc1 = nn.Linear(1, hidden)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


sizes = torch.arange(1, 4000, 8).float()
volumes = sizes ** 3
inputs = sizes.unsqueeze(1)  # root-cause
targets = volumes.unsqueeze(1)  # root-cause


# %% gradwatch
def fit(model, x, y, epochs=300, lr=1e-3):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    criterion = nn.MSELoss()
    for epoch in range(epochs):
        optimizer.zero_grad()
        out = model(x)
        loss = criterion(out, y)
        loss.backward()  # related
        optimizer.step()
        if epoch % 60 == 0 or epoch == epochs - 1:
            print(f"Epoch {epoch}, loss {loss.item():.6g}, max. pred val {out.max().item():.4g}")
    return model


model = fit(Network(), inputs, targets)
with torch.no_grad():
    print("prediction at 2000:", model(torch.tensor([[2000.0]])).item(), "true:", 2000.0 ** 3)
