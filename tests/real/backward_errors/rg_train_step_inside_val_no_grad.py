# source: https://github.com/nianticlabs/monodepth2/issues/24
# bug-class: backward-error/requires-grad-missing
# symptom: losses["loss"].backward() raises "element 0 of tensors does not require grad and does not have a grad_fn" in the first training batch
# diagnosis: the edited `run_epoch` computes the training losses inside the `with torch.no_grad():` block copied from `val()`, so the depth network's outputs carry no graph; only the metrics belong under no_grad
# expect-error: RuntimeError
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(11)


def make_split(n, size=16):
    images = torch.rand(n, 3, size, size)
    depth = 0.5 + images.mean(dim=1, keepdim=True) * 4.0
    return [{"color": images[i:i + 8], "depth_gt": depth[i:i + 8]} for i in range(0, n, 8)]


train_batches = make_split(64)
val_batches = make_split(16)


class DepthNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc1 = nn.Conv2d(3, 16, 3, padding=1)
        self.enc2 = nn.Conv2d(16, 16, 3, padding=1)
        self.dec = nn.Conv2d(16, 1, 3, padding=1)

    def forward(self, x):
        x = F.elu(self.enc1(x))
        x = F.elu(self.enc2(x))
        return 0.1 + 10.0 * torch.sigmoid(self.dec(x))


def compute_depth_errors(gt, pred):
    abs_rel = torch.mean(torch.abs(gt - pred) / gt)
    rmse = torch.sqrt(torch.mean((gt - pred) ** 2))
    return abs_rel, rmse


# %% gradwatch
class Trainer:
    def __init__(self):
        self.model = DepthNet()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)

    def process_batch(self, inputs):
        pred = self.model(inputs["color"])
        losses = {"loss": F.l1_loss(pred, inputs["depth_gt"])}
        return pred, losses

    def val(self):
        self.model.eval()
        with torch.no_grad():
            errs = [compute_depth_errors(b["depth_gt"], self.process_batch(b)[0]) for b in val_batches]
        self.model.train()
        return sum(e[0].item() for e in errs) / len(errs)

    def run_epoch(self, epoch):
        self.model.train()
        for batch_idx, inputs in enumerate(train_batches):
            with torch.no_grad():  # root-cause
                pred, losses = self.process_batch(inputs)
                abs_rel, rmse = compute_depth_errors(inputs["depth_gt"], pred)
            self.optimizer.zero_grad()
            losses["loss"].backward()  # related
            self.optimizer.step()
            if batch_idx % 4 == 0:
                print(f"epoch {epoch} batch {batch_idx} loss {losses['loss'].item():.4f} abs_rel {abs_rel.item():.4f}")

    def train(self, epochs=3):
        for epoch in range(epochs):
            self.run_epoch(epoch)
            print(f"epoch {epoch} val abs_rel {self.val():.4f}")


Trainer().train()
