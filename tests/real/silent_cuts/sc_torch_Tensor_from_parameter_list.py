# source: https://github.com/pytorch/pytorch/issues/61410
# bug-class: silent-cut/torch-Tensor-rebuild
# symptom: loss.backward() raises "element 0 of tensors does not require grad and does not have a grad_fn" on the first step
# diagnosis: `torch.Tensor([p for p in self.coeffs])` builds a new tensor from the parameters' values and drops `requires_grad`, so the prediction is cut from every coefficient; use `torch.stack(list(self.coeffs))` or `torch.cat`
# expect-error: RuntimeError
# %% gradwatch
import torch
import torch.nn as nn

torch.manual_seed(61410)

DT = 0.05
TRUE_COEFFS = [-4.0, -0.6, 1.0]  # stiffness, damping, forcing gain


def simulate(n_steps=200):
    """Damped, forced oscillator; returns states (x, v, u) and the next-step accelerations."""
    x, v = 1.0, 0.0
    states, accels = [], []
    for t in range(n_steps):
        u = torch.sin(torch.tensor(0.3 * t)).item()
        a = TRUE_COEFFS[0] * x + TRUE_COEFFS[1] * v + TRUE_COEFFS[2] * u
        states.append([x, v, u])
        accels.append(a)
        v += DT * a
        x += DT * v
    states = torch.tensor(states)
    return states, torch.tensor(accels).unsqueeze(1) + 0.01 * torch.randn(n_steps, 1)


class OscillatorModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.coeffs = nn.ParameterList(nn.Parameter(torch.zeros(1)) for _ in range(3))

    def coefficient_vector(self):
        return torch.Tensor([p for p in self.coeffs])  # root-cause

    def forward(self, states):
        return states @ self.coefficient_vector().unsqueeze(1)


states, accels = simulate()
model = OscillatorModel()
optimizer = torch.optim.Adam(model.parameters(), lr=0.05)


def fit(epochs=200):
    for epoch in range(epochs):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(states), accels)
        loss.backward()  # related
        optimizer.step()
        if epoch % 50 == 0:
            coeffs = [round(p.item(), 3) for p in model.coeffs]
            print(f"epoch {epoch:3d}: loss {loss.item():.4f}  coeffs {coeffs}")


fit()
