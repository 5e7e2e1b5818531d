# source: https://github.com/meta-pytorch/opacus/issues/432
# bug-class: stale-optimizer/layers-replaced-after-optimizer
# symptom: the CNN trains, but every GroupNorm scale and shift stays at exactly 1 and 0 for the whole run; no error
# diagnosis: `fix_norm_layers` swaps each BatchNorm2d for a new GroupNorm after `optimizer` was built from `model.parameters()`, so the new normalisation parameters receive gradients but are in no optimizer; build the optimizer after the fix
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(13)


def make_images(n, n_classes=4, size=12):
    """Textured 1-channel images: the class decides the stripe orientation/frequency."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    labels = torch.randint(0, n_classes, (n,))
    freq = 2.0 + labels.float().view(-1, 1, 1) * 1.5
    phase = torch.rand(n, 1, 1) * 6.28
    horizontal = (labels % 2 == 0).view(-1, 1, 1)
    grid = torch.where(horizontal, yy, xx)
    imgs = torch.sin(6.28 * freq * grid + phase) + 0.3 * torch.randn(n, size, size)
    return imgs.unsqueeze(1), labels


train_x, train_y = make_images(256)
test_x, test_y = make_images(128)


# %%
class SmallCNN(nn.Module):
    def __init__(self, n_classes=4):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(32, n_classes)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


def fix_norm_layers(model, groups=4):
    """Private training does not allow BatchNorm: replace it by GroupNorm (what ModuleValidator.fix does)."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            setattr(model, name, nn.GroupNorm(groups, child.num_features))
        else:
            fix_norm_layers(child, groups)
    return model


def train(model, optimizer, epochs=4, batch_size=64):
    for epoch in range(epochs):
        model.train()
        for i in range(0, len(train_x), batch_size):
            xb, yb = train_x[i:i + batch_size], train_y[i:i + batch_size]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()  # related
        model.eval()
        with torch.no_grad():
            acc = (model(test_x).argmax(1) == test_y).float().mean().item()
        print(f"epoch {epoch}: last loss {loss.item():.4f}  test acc {acc:.3f}")


# %% gradwatch
model = SmallCNN()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
model = fix_norm_layers(model)  # root-cause

train(model, optimizer)
gn = model.features[1]
print(type(gn).__name__, "weight all ones:", bool((gn.weight == 1).all()), " bias all zeros:", bool((gn.bias == 0).all()))
