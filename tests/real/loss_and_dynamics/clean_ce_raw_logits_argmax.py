# source: https://github.com/weiaicunzai/pytorch-cifar100/issues/26
# bug-class: clean/ce-on-raw-logits
# symptom: none: the network has no softmax layer, the loss goes down and the accuracy goes up
# diagnosis: correct: `nn.CrossEntropyLoss` applies log-softmax itself, so the model returns raw logits; accuracy uses `argmax` of the logits and `softmax` is only applied under `no_grad` to report confidences
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(26)

N_CLASSES = 8


def make_cifar_like(n, templates):
    labels = torch.randint(0, N_CLASSES, (n,))
    images = templates[labels] + 0.7 * torch.randn(n, 3, 16, 16)
    return images, labels


templates = torch.randn(N_CLASSES, 3, 16, 16)
train_images, train_labels = make_cifar_like(384, templates)
test_images, test_labels = make_cifar_like(128, templates)


class VGGTiny(nn.Module):
    def __init__(self, num_class=N_CLASSES):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Linear(32 * 4 * 4, 64), nn.ReLU(inplace=True), nn.Dropout(), nn.Linear(64, num_class))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


# %% gradwatch
net = VGGTiny()
loss_function = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)


def train(epoch, bs=64):
    net.train()
    for i in range(0, len(train_images), bs):
        optimizer.zero_grad()
        outputs = net(train_images[i:i + bs])
        loss = loss_function(outputs, train_labels[i:i + bs])
        loss.backward()
        optimizer.step()
    return loss.item()


@torch.no_grad()
def eval_training():
    net.eval()
    outputs = net(test_images)
    preds = outputs.argmax(dim=1)
    confidence = F.softmax(outputs, dim=1).max(dim=1).values.mean()
    return (preds == test_labels).float().mean().item(), confidence.item()


for epoch in range(1, 7):
    last_loss = train(epoch)
    acc, conf = eval_training()
    print(f"epoch {epoch}: train loss {last_loss:.4f}, test acc {acc:.3f}, mean confidence {conf:.3f}")
