# source: https://github.com/utcsilab/deepinpy/issues/13
# bug-class: loss/sum-reduction-scale
# symptom: with batch_size 32 the reconstruction loss goes 184, 276, 2.6e4, 9.5e13 and then nan within the first epoch (batch_size 2 trains with the same step size); no error
# diagnosis: `self._loss_fun = nn.MSELoss(reduction='sum')` sums over the batch and every sample, so the gradient (and the effective step size) grows with the batch size; use `reduction='mean'` (or divide by the batch size)
# %%
import torch
import torch.nn as nn

torch.manual_seed(13)

SIG_LEN = 64


def make_dataset(n=256):
    t = torch.linspace(0, 1, SIG_LEN)
    freqs = torch.rand(n, 3) * 6 + 1
    phases = torch.rand(n, 3) * 6.28
    x = sum(torch.sin(2 * 3.1416 * freqs[:, k:k + 1] * t + phases[:, k:k + 1]) for k in range(3)) / 3
    mask = (torch.rand(SIG_LEN) < 0.5).float()
    y = x * mask + 0.05 * torch.randn(n, SIG_LEN)
    return y, x, mask


class UnrolledRecon(nn.Module):
    def __init__(self, n_unrolls=3, hidden=16):
        super().__init__()
        self.denoisers = nn.ModuleList(
            nn.Sequential(nn.Conv1d(1, hidden, 5, padding=2), nn.ReLU(), nn.Conv1d(hidden, 1, 5, padding=2))
            for _ in range(n_unrolls)
        )
        self.step = nn.Parameter(torch.tensor(0.5))

    def forward(self, y, mask):
        x = y
        for denoise in self.denoisers:
            x = x - self.step * mask * (x - y)
            x = x + denoise(x.unsqueeze(1)).squeeze(1)
        return x


class Recon:
    def __init__(self, config):
        self.config = config
        self.network = UnrolledRecon()
        self._loss_fun = nn.MSELoss(reduction="sum")  # root-cause
        self.optimizer = torch.optim.SGD(self.network.parameters(), lr=config["step"])

    def batch(self, y, x, mask):
        return self._loss_fun(self.network(y, mask), x)


config = {"step": 2e-4, "batch_size": 32, "num_epochs": 6}
train_y, train_x, mask = make_dataset()


# %% gradwatch
def training_step(recon, y, x):
    recon.optimizer.zero_grad()
    loss = recon.batch(y, x, mask)  # related
    loss.backward()
    recon.optimizer.step()
    return loss.item()


def run(recon):
    bs = recon.config["batch_size"]
    for epoch in range(recon.config["num_epochs"]):
        losses = [training_step(recon, train_y[i:i + bs], train_x[i:i + bs]) for i in range(0, len(train_y), bs)]
        if epoch == 0:
            print("first steps:", ", ".join(f"{l:.3g}" for l in losses[:6]))
        print(f"epoch {epoch}: mean batch loss {sum(losses) / len(losses):.4g}")


run(Recon(config))
