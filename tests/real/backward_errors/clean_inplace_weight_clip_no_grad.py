# source: https://discuss.pytorch.org/t/leaf-variable-was-used-in-an-inplace-operation/308/2
# bug-class: clean/inplace-leaf-under-no-grad
# symptom: none; the WGAN critic's weights are clipped in place after every step and training proceeds
# diagnosis: correct: `p.clamp_(...)` modifies leaf parameters in place, but inside `torch.no_grad()`, which is the documented way to change a leaf without autograd recording it
# %%
import torch
import torch.nn as nn

torch.manual_seed(31)

DIM, NOISE = 8, 4
CLIP = 0.05
N_CRITIC = 5


def sample_real(n=64):
    centers = torch.tensor([[2.0] * DIM, [-2.0] * DIM])
    return centers[torch.randint(0, 2, (n,))] + 0.3 * torch.randn(n, DIM)


# %%
generator = nn.Sequential(nn.Linear(NOISE, 32), nn.ReLU(), nn.Linear(32, DIM))
critic = nn.Sequential(nn.Linear(DIM, 32), nn.ReLU(), nn.Linear(32, 1))
opt_g = torch.optim.RMSprop(generator.parameters(), lr=5e-4)
opt_c = torch.optim.RMSprop(critic.parameters(), lr=5e-4)


def clip_weights(module, c):
    with torch.no_grad():
        for p in module.parameters():
            p.clamp_(-c, c)


def sample_quality(n=256):
    with torch.no_grad():
        fake = generator(torch.randn(n, NOISE))
    return fake.abs().mean().item()


# %% gradwatch
def train(iterations=60):
    for it in range(iterations):
        for _ in range(N_CRITIC):
            real = sample_real()
            fake = generator(torch.randn(real.size(0), NOISE)).detach()
            loss_c = critic(fake).mean() - critic(real).mean()
            opt_c.zero_grad()
            loss_c.backward()
            opt_c.step()
            clip_weights(critic, CLIP)

        loss_g = -critic(generator(torch.randn(64, NOISE))).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        if it % 15 == 0:
            print(f"iter {it} critic {loss_c.item():.4f} gen {loss_g.item():.4f} |fake| {sample_quality():.3f}")


train()
