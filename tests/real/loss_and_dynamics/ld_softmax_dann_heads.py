# source: https://github.com/NaJaeMin92/pytorch-DANN/issues/7
# bug-class: loss/double-softmax
# symptom: the class loss and the domain loss of the DANN hardly move from their starting values; no error
# diagnosis: `Classifier.forward` and `Discriminator.forward` return `F.softmax(...)`, and `nn.CrossEntropyLoss` applies log-softmax on top of those probabilities, so the gradients to both heads and to the extractor are tiny; return the logits
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(11)


def make_domain(n, shift, noise):
    protos = torch.linspace(-1, 1, 10).view(10, 1, 1, 1) * torch.ones(10, 1, 12, 12)
    protos = protos + torch.randn(10, 1, 12, 12) * 0.3
    y = torch.randint(0, 10, (n,))
    x = protos[y] + shift + torch.randn(n, 1, 12, 12) * noise
    return x.repeat(1, 3, 1, 1), y


source_x, source_y = make_domain(192, 0.0, 0.3)
target_x, target_y = make_domain(192, 0.5, 0.5)


class ReverseLayerF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.neg() * ctx.alpha, None


class Extractor(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 24, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )

    def forward(self, x):
        return self.features(x).flatten(1)


class Classifier(nn.Module):
    def __init__(self, in_features=24 * 3 * 3):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(in_features, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, h):
        return F.softmax(self.layers(h), dim=1)  # root-cause


class Discriminator(nn.Module):
    def __init__(self, in_features=24 * 3 * 3):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(in_features, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, h, alpha):
        h = ReverseLayerF.apply(h, alpha)
        return F.softmax(self.layers(h), dim=1)  # root-cause


# %% gradwatch
def train_epoch(extractor, classifier, discriminator, optimizer, epoch, n_epochs, batch_size=32):
    class_criterion = nn.CrossEntropyLoss()
    domain_criterion = nn.CrossEntropyLoss()
    n_batches = len(source_x) // batch_size
    totals = [0.0, 0.0]
    for b in range(n_batches):
        p = (b + epoch * n_batches) / (n_epochs * n_batches)
        alpha = 2.0 / (1.0 + torch.exp(torch.tensor(-10.0 * p)).item()) - 1.0
        sl = slice(b * batch_size, (b + 1) * batch_size)
        xs, ys, xt = source_x[sl], source_y[sl], target_x[sl]
        combined = torch.cat([xs, xt])
        domain_labels = torch.cat([torch.zeros(len(xs)), torch.ones(len(xt))]).long()

        optimizer.zero_grad()
        feats = extractor(combined)
        class_pred = classifier(feats[: len(xs)])
        class_loss = class_criterion(class_pred, ys)  # related
        domain_pred = discriminator(feats, alpha)
        domain_loss = domain_criterion(domain_pred, domain_labels)  # related
        (class_loss + domain_loss).backward()
        optimizer.step()
        totals[0] += class_loss.item()
        totals[1] += domain_loss.item()
    return totals[0] / n_batches, totals[1] / n_batches


def evaluate(extractor, classifier, x, y):
    with torch.no_grad():
        return (classifier(extractor(x)).argmax(1) == y).float().mean().item()


extractor, classifier, discriminator = Extractor(), Classifier(), Discriminator()
params = list(extractor.parameters()) + list(classifier.parameters()) + list(discriminator.parameters())
optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
n_epochs = 4
for epoch in range(n_epochs):
    c_loss, d_loss = train_epoch(extractor, classifier, discriminator, optimizer, epoch, n_epochs)
    acc_s = evaluate(extractor, classifier, source_x, source_y)
    acc_t = evaluate(extractor, classifier, target_x, target_y)
    print(f"epoch {epoch}: class loss {c_loss:.3f}, domain loss {d_loss:.3f}, "
          f"source acc {acc_s:.3f}, target acc {acc_t:.3f}")
