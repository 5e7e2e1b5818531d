# source: https://github.com/LZGMatrix/BOP19_CDPN_2019ICCV/issues/4
# bug-class: silent-cut/argmax-in-loss
# symptom: loss.backward() raises "element 0 of tensors does not require grad and does not have a grad_fn" although every model parameter has requires_grad=True
# diagnosis: the per-axis bin logits are turned into coordinates with `torch.argmax(...)` before the loss; argmax is not differentiable, so the coordinate loss is cut from the network; the loss must be taken on the logits (e.g. cross entropy over the bins) before the argmax
# expect-error: RuntimeError
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(4)

COOR_BIN = 16
N_PIXELS, FEAT = 128, 10


def make_pixels(n):
    feats = torch.randn(n, FEAT)
    coords = torch.tanh(feats[:, :3] * 0.8)  # ground-truth object coordinates in [-1, 1]
    return feats, coords


# %%
class CoordinateHead(nn.Module):
    """Predicts, for every pixel, a distribution over COOR_BIN bins for x, y and z."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(FEAT, 64), nn.ReLU())
        self.x_bins = nn.Linear(64, COOR_BIN)
        self.y_bins = nn.Linear(64, COOR_BIN)
        self.z_bins = nn.Linear(64, COOR_BIN)

    def forward(self, feats):
        h = self.trunk(feats)
        return self.x_bins(h), self.y_bins(h), self.z_bins(h)


def decode_coords(output_coor_x, output_coor_y, output_coor_z):
    output_coor = torch.stack([torch.argmax(output_coor_x, dim=1),  # root-cause
                               torch.argmax(output_coor_y, dim=1),  # root-cause
                               torch.argmax(output_coor_z, dim=1)], dim=1)  # root-cause
    return 2.0 * output_coor.float() / (COOR_BIN - 1) - 1.0  # [-1, 1]


model = CoordinateHead()
print("all parameters require grad:", all(p.requires_grad for p in model.parameters()))


# %% gradwatch
def train(epochs=5, batch=32):
    feats, coords = make_pixels(N_PIXELS)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(epochs):
        for i in range(0, N_PIXELS, batch):
            pred = decode_coords(*model(feats[i:i + batch]))
            loss = F.l1_loss(pred, coords[i:i + batch])
            optimizer.zero_grad()
            loss.backward()  # related
            optimizer.step()
        print(f"epoch {epoch}: coordinate L1 {loss.item():.4f}")


train()
