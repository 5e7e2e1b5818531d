# source: https://github.com/daniel03c1/masked_wavelet_nerf/issues/10
# bug-class: silent-cut/straight-through-detach-whole-output
# symptom: the loss stops improving early; the masked feature grid and its mask logits never change, only the small decoder trains
# diagnosis: the binary mask is applied as `(grid * (mask >= 0.5)).detach()`, which detaches the whole masked grid instead of only the straight-through correction, so neither `grid` nor `mask_logits` gets a gradient; the straight-through form `(grid * hard - grid * soft).detach() + grid * soft` lets both train
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(10)

CHANNELS, RESOLUTION = 8, 64


class MaskedLineField(nn.Module):
    """A 1-D feature line with a learned binary mask, decoded by a tiny MLP (a slice of a masked NeRF grid)."""

    def __init__(self):
        super().__init__()
        self.grid = nn.Parameter(0.1 * torch.randn(CHANNELS, RESOLUTION))
        self.mask_logits = nn.Parameter(torch.full((CHANNELS, RESOLUTION), 1.0))
        self.decoder = nn.Sequential(nn.Linear(CHANNELS, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x):
        mask = torch.sigmoid(self.mask_logits)
        grid = (self.grid * (mask >= 0.5)).detach()  # root-cause
        pos = x * (RESOLUTION - 1)
        left = pos.floor().long().clamp(0, RESOLUTION - 2)
        w = (pos - left).unsqueeze(1)
        feats = grid[:, left].t() * (1 - w) + grid[:, left + 1].t() * w
        return self.decoder(feats).squeeze(1)


field = MaskedLineField()
# compiled like the training script does; backend="aot_eager" traces the same graph as inductor and needs no C++ compiler
compiled_field = torch.compile(field, backend="aot_eager")

x_train = torch.rand(512)
y_train = torch.sin(12 * x_train) + 0.5 * torch.cos(31 * x_train)
optimizer = torch.optim.Adam(field.parameters(), lr=1e-2)

# %% gradwatch
grid_before = field.grid.detach().clone()
for step in range(60):
    idx = torch.randint(0, len(x_train), (128,))
    loss = F.mse_loss(compiled_field(x_train[idx]), y_train[idx])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()  # related
    if step % 20 == 0:
        print(f"step {step}: loss {loss.item():.4f}")
print("grid changed:", not torch.equal(grid_before, field.grid))
