# source: https://github.com/sharif-apu/BJDD_CVPR21/issues/11
# bug-class: silent-cut/numpy-round-trip
# symptom: no error; the colour loss is part of the total loss but the generator trains exactly as if it were not there (identical weights with colour weight 0 or 1)
# diagnosis: the colour loss converts the generated image with `.cpu().detach().numpy()`, computes the colour difference in NumPy and re-wraps the numbers with `torch.tensor(..., requires_grad=True)`, a fresh leaf with no path back to the generator; it has to be computed with torch ops on the generator output
# %%
import numpy as np
import torch
import torch.nn as nn

torch.manual_seed(11)
np.random.seed(11)

# linear RGB -> opponent colour space used as a stand-in for CIELAB
RGB2OPP = np.array([[0.299, 0.587, 0.114], [0.5, -0.5, 0.0], [0.25, 0.25, -0.5]], dtype=np.float32)


def make_pairs(n, size=8):
    clean = torch.rand(n, 3, size, size)
    noisy = clean + 0.2 * torch.randn_like(clean)
    noisy[:, 1] *= 0.7  # colour cast on the green channel
    return noisy, clean


# %%
class deltaEColorLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.loss = []

    def torchTensorToNumpy(self, image):
        return image.cpu().detach().numpy().transpose(1, 2, 0)  # root-cause

    def __call__(self, genImage, gtImage):
        self.loss.clear()
        for pair in range(len(genImage)):
            gt = self.torchTensorToNumpy(gtImage[pair]) @ RGB2OPP.T
            gen = self.torchTensorToNumpy(genImage[pair]) @ RGB2OPP.T
            deltaE = np.sqrt(((gt - gen) ** 2).sum(axis=-1))
            self.loss.append(np.mean(deltaE))
        return torch.mean(torch.tensor(self.loss, requires_grad=True))  # root-cause


class Enhancer(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


# %% gradwatch
def train(color_weight, epochs=4, batch=16):
    torch.manual_seed(0)
    gen = Enhancer()
    opt = torch.optim.Adam(gen.parameters(), lr=2e-3)
    l1, color = nn.L1Loss(), deltaEColorLoss()
    noisy, clean = make_pairs(128)
    for epoch in range(epochs):
        for i in range(0, len(noisy), batch):
            out = gen(noisy[i:i + batch])
            l1_loss = l1(out, clean[i:i + batch])
            color_loss = color(out, clean[i:i + batch])
            total = l1_loss + color_weight * color_loss
            opt.zero_grad()
            total.backward()
            opt.step()
        print(f"  colour weight {color_weight}: epoch {epoch} L1 {l1_loss.item():.4f} deltaE {color_loss.item():.4f}")
    return [p.detach().clone() for p in gen.parameters()]


weights_without = train(0.0)
weights_with = train(1.0)
same = all(torch.equal(a, b) for a, b in zip(weights_without, weights_with))
print("generator identical with and without the colour loss:", same)
