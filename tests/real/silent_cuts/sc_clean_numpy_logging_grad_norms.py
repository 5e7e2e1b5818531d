# source: https://github.com/source-separation/tutorial/issues/28
# bug-class: clean/numpy-logging
# symptom: none; every learning rate trains and the logged curves are summarised with NumPy
# diagnosis: correct: the loss and gradient norms are turned into NumPy (`loss.detach().numpy()`, `np.log10`) only to record and summarise the training curves, after `backward()`; nothing that feeds the loss goes through NumPy
# %% gradwatch
import numpy as np
import torch
import torch.nn as nn

torch.manual_seed(28)
np.random.seed(28)

N_FREQ, N_FRAMES = 24, 256
LEARNING_RATES = [1e-3, 1e-2, 5e-2]


def make_mixtures():
    voice = torch.rand(N_FRAMES, N_FREQ) * (torch.arange(N_FREQ) < 12).float()
    noise = 0.5 * torch.rand(N_FRAMES, N_FREQ)
    mix = voice + noise
    ideal_mask = voice / (mix + 1e-8)
    return mix, ideal_mask


class MaskEstimator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(N_FREQ, 48), nn.ReLU(), nn.Linear(48, N_FREQ), nn.Sigmoid())

    def forward(self, mix):
        return self.net(torch.log1p(mix))


def grad_norm(model):
    total = 0.0
    for p in model.parameters():
        total += p.grad.norm().item() ** 2
    return total ** 0.5


mix, ideal_mask = make_mixtures()

grad_norms, losses = [], []
for lr in LEARNING_RATES:
    torch.manual_seed(0)
    model = MaskEstimator()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    run_norms, run_losses = [], []
    for it in range(80):
        optimizer.zero_grad()
        loss = nn.functional.l1_loss(model(mix) * mix, ideal_mask * mix)
        loss.backward()
        run_norms.append(grad_norm(model))
        run_losses.append(loss.detach().numpy())
        optimizer.step()
    grad_norms.append(np.array(run_norms))
    losses.append(np.array(run_losses))


for lr, norms, curve in zip(LEARNING_RATES, grad_norms, losses):
    log_curve = np.log10(curve)
    print(f"lr {lr:g}: log10(loss) {log_curve[0]:.3f} -> {log_curve[-1]:.3f}  "
          f"grad norm median {np.median(norms):.4f}")
