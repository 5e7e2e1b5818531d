# source: https://github.com/pytorch/pytorch/issues/39141
# bug-class: backward-error/inplace-saved-tensor
# symptom: G_loss.backward() raises "one of the variables needed for gradient computation has been modified by an inplace operation" (a [128, 1] weight of the discriminator, at version 2; expected version 1)
# diagnosis: `opt_D.step()` updates the discriminator's weights in place, but `G_loss` was computed through the same `D(G_paintings)` graph, which saved those weights; step D after G's backward, or recompute `D(G_paintings)` after the step
# expect-error: RuntimeError
# %%
import numpy as np
import torch
import torch.nn as nn

torch.manual_seed(1)
np.random.seed(1)

BATCH_SIZE = 64
LR_G = 0.0001
LR_D = 0.0001
N_IDEAS = 5
ART_COMPONENTS = 15
PAINT_POINTS = np.vstack([np.linspace(-1, 1, ART_COMPONENTS) for _ in range(BATCH_SIZE)])


def artist_works():
    r = 0.02 * np.random.randn(1, ART_COMPONENTS)
    paintings = np.sin(PAINT_POINTS * np.pi) + r
    return torch.from_numpy(paintings).float()


# %%
G = nn.Sequential(
    nn.Linear(N_IDEAS, 128),
    nn.ReLU(),
    nn.Linear(128, ART_COMPONENTS),
)

D = nn.Sequential(
    nn.Linear(ART_COMPONENTS, 128),
    nn.ReLU(),
    nn.Linear(128, 1),
    nn.Sigmoid(),
)

opt_D = torch.optim.Adam(D.parameters(), lr=LR_D)
opt_G = torch.optim.Adam(G.parameters(), lr=LR_G)


def curve_error(paintings):
    target = torch.from_numpy(np.sin(PAINT_POINTS * np.pi)).float()
    return (paintings - target).abs().mean().item()


# %% gradwatch
def train_step():
    artist_paintings = artist_works()
    G_ideas = torch.randn(BATCH_SIZE, N_IDEAS)
    G_paintings = G(G_ideas)

    prob_artist0 = D(artist_paintings)
    prob_artist1 = D(G_paintings)

    D_loss = -torch.mean(torch.log(prob_artist0) + torch.log(1.0 - prob_artist1))
    G_loss = torch.mean(torch.log(1.0 - prob_artist1))

    opt_D.zero_grad()
    D_loss.backward(retain_graph=True)
    opt_D.step()  # root-cause

    opt_G.zero_grad()
    G_loss.backward()  # related
    opt_G.step()
    return D_loss.item(), G_loss.item(), G_paintings


for step in range(200):
    d_loss, g_loss, paintings = train_step()
    if step % 50 == 0:
        print(f"step {step} D {d_loss:.3f} G {g_loss:.3f} curve err {curve_error(paintings.detach()):.3f}")
