# source: https://github.com/pytorch/pytorch/issues/1339
# bug-class: none-grad/argmax-cut
# symptom: AttributeError: 'NoneType' object has no attribute 'data' when the gradient report loops over the first module's parameters after loss.backward()
# diagnosis: `torch.max(scores, 1)[1]` (an argmax) hands integer indices to the second module; argmax has no gradient, so nothing flows back into `encoder` and its `.grad` stays None
# expect-error: AttributeError
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(5)

N_FEATURES, N_CODES, N_CLASSES = 12, 8, 3


def make_dataset(n):
    x = torch.randn(n, N_FEATURES)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


train_x, train_y = make_dataset(256)
val_x, val_y = make_dataset(64)

# %%
class CodeSelector(nn.Module):
    """First module: scores every discrete code for the input."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(N_FEATURES, 32), nn.ReLU(), nn.Linear(32, N_CODES))

    def forward(self, x):
        return self.net(x)


class CodeClassifier(nn.Module):
    """Second module: classifies from the chosen code."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(N_CODES, 16)
        self.head = nn.Linear(16, N_CLASSES)

    def forward(self, codes):
        return self.head(torch.relu(self.embed(codes)))


encoder = CodeSelector()
classifier = CodeClassifier()
optimizer = torch.optim.Adam(list(encoder.parameters()) + list(classifier.parameters()), lr=1e-2)


def run(x):
    scores = encoder(x)
    codes = torch.max(scores, 1)[1]  # root-cause
    return classifier(codes)


def grad_report(name, module):
    total = 0.0
    for param in module.parameters():
        total += param.grad.data.norm().item() ** 2  # related
    print(f"  {name}: grad norm {total ** 0.5:.4f}")


# %% gradwatch
def train_epoch(epoch, batch_size=64):
    for i in range(0, len(train_x), batch_size):
        xb, yb = train_x[i:i + batch_size], train_y[i:i + batch_size]
        optimizer.zero_grad()
        loss = F.cross_entropy(run(xb), yb)
        loss.backward()
        if i == 0:
            print(f"epoch {epoch}: loss {loss.item():.4f}")
            grad_report("classifier", classifier)
            grad_report("encoder", encoder)
        optimizer.step()


def evaluate():
    with torch.no_grad():
        return (run(val_x).argmax(1) == val_y).float().mean().item()


for epoch in range(3):
    train_epoch(epoch)
    print(f"  val accuracy {evaluate():.3f}")
