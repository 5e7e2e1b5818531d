# source: https://github.com/choderalab/modelforge/issues/131
# bug-class: clean/unused-parameters-excluded-from-optimizer
# symptom: none: the energy model trains by gradient descent; the partial-charge readout, which the training forward never uses, is fitted afterwards in closed form
# diagnosis: correct: `charge_readout` is a parameterised layer that the energy loss does not reach on purpose; the optimizer is built only from `representation` and `energy_head`, and the readout's weights are set under no_grad by least squares after training
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(19)
N_ATOMS, N_DESC = 6, 12


def make_molecules(n):
    """Per-atom descriptors; the molecule energy and the per-atom charges are smooth functions of them."""
    desc = torch.randn(n, N_ATOMS, N_DESC)
    w_e = torch.linspace(-1, 1, N_DESC)
    atom_e = torch.tanh(desc @ w_e) + 0.1 * desc[..., 0] ** 2
    energy = atom_e.sum(dim=1)
    charges = 0.3 * torch.tanh(desc[..., 1] - desc[..., 2])
    return desc, energy, charges


class AtomisticModel(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.representation = nn.Sequential(nn.Linear(N_DESC, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.energy_head = nn.Linear(hidden, 1)
        self.charge_readout = nn.Linear(hidden, 1)  # only used by predict_charges, fitted separately

    def forward(self, desc):
        h = self.representation(desc)
        return self.energy_head(h).squeeze(-1).sum(dim=1)

    @torch.no_grad()
    def fit_charge_readout(self, desc, charges):
        h = self.representation(desc).reshape(-1, self.charge_readout.in_features)
        design = torch.cat([h, torch.ones(len(h), 1)], dim=1)
        sol = torch.linalg.lstsq(design, charges.reshape(-1, 1)).solution
        self.charge_readout.weight.copy_(sol[:-1].t())
        self.charge_readout.bias.copy_(sol[-1])

    @torch.no_grad()
    def predict_charges(self, desc):
        return self.charge_readout(self.representation(desc)).squeeze(-1)


train = make_molecules(256)
test = make_molecules(64)
model = AtomisticModel()

# %% gradwatch
trained_modules = [model.representation, model.energy_head]
optimizer = torch.optim.Adam([p for m in trained_modules for p in m.parameters()], lr=3e-3)

desc, energy, charges = train
for epoch in range(6):
    perm = torch.randperm(len(desc))
    for i in range(0, len(desc), 32):
        idx = perm[i:i + 32]
        loss = F.mse_loss(model(desc[idx]), energy[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        test_mae = (model(test[0]) - test[1]).abs().mean().item()
    print(f"epoch {epoch}: energy loss {loss.item():.4f}  test MAE {test_mae:.4f}")

model.fit_charge_readout(desc, charges)
charge_mae = (model.predict_charges(test[0]) - test[2]).abs().mean().item()
print(f"charge readout MAE {charge_mae:.4f}")
