# source: https://github.com/yifita/deep_cage/issues/16
# bug-class: silent-cut/detach-in-helper
# symptom: no error; the weight-regularisation term has no effect: training with mvc_weight 0 or 10 gives identical cages and losses
# diagnosis: the helper that computes the cage weights ends with `weights = weights.detach()`, so the regulariser `mvc_weight * weight_reg(weights)` is a constant for autograd and never reaches `cage_net`
# %%
import torch
import torch.nn as nn

torch.manual_seed(16)

N_POINTS, N_CAGE = 48, 8
angles = torch.linspace(0, 6.2832, N_CAGE + 1)[:-1]
BASE_CAGE = 1.5 * torch.stack([angles.cos(), angles.sin()], dim=1)


def make_shape_pair():
    t = torch.rand(N_POINTS) * 6.2832
    source = torch.stack([t.cos(), 0.6 * t.sin()], dim=1)
    target = source * torch.tensor([1.3, 0.8]) + torch.tensor([0.1, -0.05])
    return source, target


def compute_weights(points, cage, tau=0.5):
    """Soft, generalised-barycentric-style weights of every point w.r.t. the cage vertices."""
    dist2 = torch.cdist(points, cage).pow(2)
    weights = torch.softmax(-dist2 / tau, dim=1)
    weights = weights.detach()  # root-cause
    return weights


def weight_reg(weights, eps=1e-8):
    # low entropy: each point should be bound to a few nearby cage vertices
    return -(weights * (weights + eps).log()).sum(dim=1).mean()


# %%
class CageDeformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.cage_net = nn.Sequential(nn.Linear(2 * N_CAGE, 32), nn.Tanh(), nn.Linear(32, 2 * N_CAGE))
        self.deform_net = nn.Sequential(nn.Linear(2 * N_CAGE, 32), nn.Tanh(), nn.Linear(32, 2 * N_CAGE))

    def forward(self, source):
        code = BASE_CAGE.flatten()
        cage = BASE_CAGE + 0.1 * self.cage_net(code).view(N_CAGE, 2)
        new_cage = cage + 0.1 * self.deform_net(code).view(N_CAGE, 2)
        weights = compute_weights(source, cage)
        deformed = weights @ new_cage
        return deformed, weights, cage


# %% gradwatch
def train(mvc_weight, iters=80):
    torch.manual_seed(0)
    model = CageDeformer()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    source, target = make_shape_pair()
    for it in range(iters):
        optimizer.zero_grad()
        deformed, weights, cage = model(source)
        fit = (deformed - target).pow(2).sum(dim=1).mean()
        wreg = weight_reg(weights)
        loss = fit + mvc_weight * wreg
        loss.backward()
        optimizer.step()
    print(f"mvc_weight={mvc_weight:5.1f}: fit {fit.item():.5f}  WREG {wreg.item():.5f}  "
          f"cage radius {cage.norm(dim=1).mean().item():.4f}")
    return cage.detach()


cages = [train(w) for w in (0.0, 1.0, 10.0)]
print("cages identical across mvc_weight:", all(torch.equal(cages[0], c) for c in cages[1:]))
