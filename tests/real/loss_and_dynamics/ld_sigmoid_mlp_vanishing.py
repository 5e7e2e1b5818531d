# source: https://github.com/phlippe/uvadlc_notebooks/issues/119
# bug-class: dynamics/vanishing-gradient-sigmoid
# symptom: the MLP with sigmoid activations sits at chance accuracy and a flat loss of about 2.30 for every epoch, so early stopping keeps the epoch-1 checkpoint; the same network with ReLU trains; no error
# diagnosis: `act_fn=nn.Sigmoid()` between the stacked linear layers: the sigmoid's derivative is at most 0.25 and its outputs are not zero-centred, so the gradients reaching the first layers are orders of magnitude smaller than those of the last layer and SGD barely moves them; use ReLU/GELU (or add normalization)
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(42)

N_CLASSES = 10
INPUT_SIZE = 196


def make_split(n, protos):
    y = torch.randint(0, N_CLASSES, (n,))
    x = protos[y] + 0.8 * torch.randn(n, INPUT_SIZE)
    return x, y


protos = torch.randn(N_CLASSES, INPUT_SIZE)
train_set = make_split(512, protos)
val_set = make_split(256, protos)


class BaseNetwork(nn.Module):
    def __init__(self, act_fn, input_size=INPUT_SIZE, num_classes=N_CLASSES, hidden_sizes=(256, 128, 128, 64)):
        super().__init__()
        layers = []
        layer_sizes = [input_size] + list(hidden_sizes)
        for i in range(1, len(layer_sizes)):
            layers += [nn.Linear(layer_sizes[i - 1], layer_sizes[i]), act_fn]
        layers += [nn.Linear(layer_sizes[-1], num_classes)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x.view(x.size(0), -1))


model = BaseNetwork(act_fn=nn.Sigmoid())  # root-cause


# %% gradwatch
def test_model(net, data):
    net.eval()
    x, y = data
    with torch.no_grad():
        return (net(x).argmax(dim=-1) == y).float().mean().item()


def train_model(net, max_epochs=10, patience=7, batch_size=64):
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.9)
    x, y = train_set
    best_acc, best_epoch, best_state = -1.0, -1, None
    for epoch in range(max_epochs):
        net.train()
        epoch_loss = 0.0
        for i in range(0, len(x), batch_size):
            preds = net(x[i:i + batch_size])
            loss = F.cross_entropy(preds, y[i:i + batch_size])
            optimizer.zero_grad()
            loss.backward()  # related
            optimizer.step()
            epoch_loss += loss.item() * len(preds)
        val_acc = test_model(net, val_set)
        print(f"[Epoch {epoch + 1:2d}] loss {epoch_loss / len(x):.4f}, val acc {val_acc * 100:.2f}%")
        if val_acc > best_acc:
            best_acc, best_epoch = val_acc, epoch
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        elif epoch - best_epoch >= patience:
            print(f"Early stopping after epoch {epoch + 1}")
            break
    net.load_state_dict(best_state)
    return best_acc


print("best val acc:", train_model(model))
