# source: https://github.com/meta-pytorch/opacus/issues/93
# bug-class: zero-grad/wrong-place
# symptom: training with 4 accumulation steps runs but the loss falls slowly (1.56 after 4 epochs instead of 1.07); the gradient at the first step has norm 0.09 instead of 0.30 because it holds only the last micro-batch; no error
# diagnosis: `optimizer.zero_grad()` sits at the top of every micro-batch, so between the backward() of micro-batches 1-3 and the next `optimizer.step()` it wipes their gradients; it must only run right after a real step
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(31)


def make_cifar_like(n, n_classes=5):
    """3x12x12 images whose class sets the dominant colour channel mix plus a blob position."""
    labels = torch.randint(0, n_classes, (n,))
    imgs = 0.5 * torch.randn(n, 3, 12, 12)
    mix = torch.randn(n_classes, 3)
    for i in range(n):
        c = labels[i].item()
        imgs[i] += mix[c].view(3, 1, 1)
        r = 2 * c
        imgs[i, :, r:r + 3, r:r + 3] += 1.5
    return imgs, labels


train_images, train_labels = make_cifar_like(320)
test_images, test_labels = make_cifar_like(160)
BATCH_SIZE, N_ACCUMULATION_STEPS = 16, 4


def train_loader():
    for i in range(0, len(train_labels), BATCH_SIZE):
        yield train_images[i:i + BATCH_SIZE], train_labels[i:i + BATCH_SIZE]


# %%
def convnet(n_classes=5):
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, n_classes),
    )


def accuracy(model):
    model.eval()
    with torch.no_grad():
        acc = (model(test_images).argmax(1) == test_labels).float().mean().item()
    model.train()
    return acc


def grad_norm(model):
    return torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters())).item()


# %% gradwatch
model = convnet()
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
n_batches = len(train_labels) // BATCH_SIZE


def train(epoch):
    model.train()
    losses = []
    for i, (images, target) in enumerate(train_loader()):
        optimizer.zero_grad()  # root-cause
        output = model(images)
        loss = criterion(output, target) / N_ACCUMULATION_STEPS
        loss.backward()
        losses.append(loss.item() * N_ACCUMULATION_STEPS)
        if ((i + 1) % N_ACCUMULATION_STEPS == 0) or ((i + 1) == n_batches):
            if i + 1 == N_ACCUMULATION_STEPS and epoch == 0:
                print(f"accumulated grad norm at the first step: {grad_norm(model):.4f}")
            optimizer.step()  # related
        # else: a virtual step, gradients are meant to keep accumulating
    print(f"epoch {epoch}: mean loss {sum(losses) / len(losses):.4f}  test acc {accuracy(model):.3f}")


for epoch in range(4):
    train(epoch)
