# source: https://github.com/mpariente/pytorch_stoi/issues/7
# bug-class: numerics/sqrt-of-zero
# symptom: the loss value looks normal, but after the first backward every weight of the enhancement model is nan; no error
# diagnosis: the intelligibility-style loss normalizes each segment by `torch.sqrt((seg ** 2).sum(...)) + EPS`; zero-padded (silent) segments have a norm of exactly 0 and the gradient of sqrt at 0 is infinite, which times the zero segment gives nan; add EPS inside the sqrt
# %%
import torch
import torch.nn as nn

torch.manual_seed(17)

EPS = 1e-8
N_BANDS, SEG = 15, 10


def make_batch(n=16, max_frames=60):
    lengths = torch.randint(30, max_frames + 1, (n,))
    lengths[0] = max_frames
    clean = torch.rand(n, N_BANDS, max_frames) + 0.1
    noise = torch.rand(n, N_BANDS, max_frames) * 0.8
    frame_mask = (torch.arange(max_frames)[None, :] < lengths[:, None]).float()[:, None, :]
    return (clean + noise) * frame_mask, clean * frame_mask, frame_mask


class MaskEstimator(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(N_BANDS, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv1d(hidden, N_BANDS, 3, padding=1), nn.Sigmoid())

    def forward(self, noisy):
        return self.net(noisy) * noisy


def segment(spec):
    # (batch, bands, frames) -> (batch, n_segments, bands, SEG)
    return spec.unfold(2, SEG, SEG).permute(0, 2, 1, 3)


class IntelligibilityLoss(nn.Module):
    def forward(self, est, ref):
        x, y = segment(ref), segment(est)
        x = x - x.mean(dim=-1, keepdim=True)
        y = y - y.mean(dim=-1, keepdim=True)
        x = x / (torch.sqrt((x ** 2).sum(dim=-1, keepdim=True)) + EPS)  # root-cause
        y = y / (torch.sqrt((y ** 2).sum(dim=-1, keepdim=True)) + EPS)  # root-cause
        corr = (x * y).sum(dim=-1).mean(dim=-1)
        return -corr.mean()


# %% gradwatch
def train(model, loss_fn, optimizer, n_steps=30):
    for step in range(n_steps):
        noisy, clean, _ = make_batch()
        optimizer.zero_grad()
        loss = loss_fn(model(noisy), clean)
        loss.backward()  # related
        optimizer.step()
        if step % 10 == 0:
            w = model.net[0].weight
            print(f"step {step}: loss {loss.item():.4f}, first conv weight finite: {bool(torch.isfinite(w).all())}")


model = MaskEstimator()
train(model, IntelligibilityLoss(), torch.optim.Adam(model.parameters(), lr=1e-3))
