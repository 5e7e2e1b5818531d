# source: https://github.com/lukemelas/EfficientNet-PyTorch/issues/152
# bug-class: frozen-parameter/unfreeze-on-module-is-noop
# symptom: transfer learning to 20 classes fails at the first loss.backward() with "element 0 of tensors does not require grad and does not have a grad_fn"
# diagnosis: every parameter is frozen, then `model._fc.requires_grad = True` only sets a plain attribute on the `nn.Linear` module and leaves its weight and bias frozen, so nothing in the network requires grad; unfreeze with `model._fc.requires_grad_(True)` (or a loop over `model._fc.parameters()`)
# expect-error: RuntimeError
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(23)


class MBConvLite(nn.Module):
    def __init__(self, ch, expand=2):
        super().__init__()
        hidden = ch * expand
        self._expand_conv = nn.Conv2d(ch, hidden, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(hidden)
        self._depthwise_conv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden)
        self._project_conv = nn.Conv2d(hidden, ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(ch)

    def forward(self, x):
        h = F.silu(self._bn0(self._expand_conv(x)))
        h = F.silu(self._bn1(self._depthwise_conv(h)))
        return x + self._bn2(self._project_conv(h))


class TinyEfficientNet(nn.Module):
    def __init__(self, num_classes=1000, width=16, n_blocks=2):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(width)
        self._blocks = nn.ModuleList([MBConvLite(width) for _ in range(n_blocks)])
        self._conv_head = nn.Conv2d(width, 2 * width, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(2 * width)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = F.silu(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.silu(self._bn1(self._conv_head(x)))
        return self._fc(self._dropout(self._avg_pooling(x).flatten(1)))

    @classmethod
    def from_pretrained(cls, num_classes):
        imagenet = cls(num_classes=1000)  # stands in for the downloaded checkpoint
        model = cls(num_classes=num_classes)
        state = {k: v for k, v in imagenet.state_dict().items() if not k.startswith("_fc.")}
        model.load_state_dict(state, strict=False)
        return model


def prepare_for_transfer(model):
    """Freeze all the parameters and then unfreeze the last layer."""
    for param in model.parameters():
        param.requires_grad = False  # root-cause
    model._fc.requires_grad = True  # root-cause
    return model


def make_dataset(n, num_classes=20):
    labels = torch.randint(0, num_classes, (n,))
    colours = torch.randn(num_classes, 3, 1, 1)
    images = colours[labels] + 0.5 * torch.randn(n, 3, 16, 16)
    return images, labels


images, labels = make_dataset(160)

# %% gradwatch
model = prepare_for_transfer(TinyEfficientNet.from_pretrained(num_classes=20))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)


def fit(epochs=3, batch_size=32):
    for epoch in range(epochs):
        model.train()
        correct = 0
        for i in range(0, len(labels), batch_size):
            logits = model(images[i:i + batch_size])
            loss = F.cross_entropy(logits, labels[i:i + batch_size])
            optimizer.zero_grad()
            loss.backward()  # related
            optimizer.step()
            correct += (logits.argmax(1) == labels[i:i + batch_size]).sum().item()
        print(f"epoch {epoch}: loss {loss.item():.4f}  train acc {correct / len(labels):.3f}")


fit()
