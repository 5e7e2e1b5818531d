# source: https://pgg1610.github.io/blog_fastpages/python/data-analysis/machine-learning/2020/10/19/pytorch_transfer_learning_basics.html
# bug-class: clean/frozen-backbone-head-only-optimizer
# symptom: none: the pretrained convnet is used as a fixed feature extractor and only the new final layer trains; validation accuracy rises
# diagnosis: correct: every backbone parameter is frozen before `model.fc` is replaced by a fresh (trainable) `nn.Linear`, and the optimizer is built afterwards over `model.fc.parameters()` only; the best weights are kept with a deepcopy of the state_dict
# %%
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(42)


class MiniResNet(nn.Module):
    """A resnet-shaped feature extractor with a `fc` head, like torchvision's resnet18."""

    def __init__(self, num_classes=1000, width=16):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = x + self.layer1(x)
        return self.fc(self.avgpool(x).flatten(1))


def make_split(n):
    """Ants vs bees stand-in: the class sets the mean colour of a 16x16 crop."""
    labels = torch.randint(0, 2, (n,))
    means = torch.tensor([[0.8, 0.3, 0.1], [0.2, 0.5, 0.9]])
    images = means[labels].view(n, 3, 1, 1) + 0.7 * torch.randn(n, 3, 16, 16)
    return images, labels


dataloaders = {"train": [make_split(24) for _ in range(5)], "val": [make_split(40)]}
dataset_sizes = {"train": 120, "val": 40}

# %%
model_conv = MiniResNet()  # stands in for models.resnet18(pretrained=True)
for param in model_conv.parameters():
    param.requires_grad = False

# parameters of newly constructed modules have requires_grad=True by default
num_ftrs = model_conv.fc.in_features
model_conv.fc = nn.Linear(num_ftrs, 2)

criterion = nn.CrossEntropyLoss()
# only the parameters of the final layer are being optimized
optimizer_conv = torch.optim.SGD(model_conv.fc.parameters(), lr=0.01, momentum=0.9)
exp_lr_scheduler = torch.optim.lr_scheduler.StepLR(optimizer_conv, step_size=3, gamma=0.1)


# %% gradwatch
def train_model(model, criterion, optimizer, scheduler, num_epochs=5):
    best_model_wts = copy.deepcopy(model.state_dict())
    best_acc = 0.0
    for epoch in range(num_epochs):
        for phase in ["train", "val"]:
            if phase == "train":
                model.train()
            else:
                model.eval()
            running_loss, running_corrects = 0.0, 0
            for inputs, labels in dataloaders[phase]:
                optimizer.zero_grad()
                with torch.set_grad_enabled(phase == "train"):
                    outputs = model(inputs)
                    loss = criterion(outputs, labels)
                    if phase == "train":
                        loss.backward()
                        optimizer.step()
                running_loss += loss.item() * inputs.size(0)
                running_corrects += (outputs.argmax(1) == labels).sum().item()
            if phase == "train":
                scheduler.step()
            epoch_loss = running_loss / dataset_sizes[phase]
            epoch_acc = running_corrects / dataset_sizes[phase]
            print(f"epoch {epoch} {phase} loss: {epoch_loss:.4f} acc: {epoch_acc:.4f}")
            if phase == "val" and epoch_acc > best_acc:
                best_acc = epoch_acc
                best_model_wts = copy.deepcopy(model.state_dict())
    print(f"best val acc: {best_acc:.4f}")
    model.load_state_dict(best_model_wts)
    return model


model_conv = train_model(model_conv, criterion, optimizer_conv, exp_lr_scheduler)
