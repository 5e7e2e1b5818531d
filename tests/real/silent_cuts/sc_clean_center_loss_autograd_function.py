# source: https://github.com/jxgu1016/MNIST_center_loss_pytorch/issues/7
# bug-class: clean/custom-autograd-function
# symptom: none; the classification loss and the center loss both fall, the features cluster around their class centers
# diagnosis: correct: the center loss is a custom `torch.autograd.Function` with the paper's hand-written backward; its forward computes the distance to the class centers under no_grad (every Function's forward runs so) and `apply` joins the result to the graph, so its term of the loss feeds the feature extractor and the centers through the Function's backward node
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)

N_CLASSES, IN_DIM, FEAT_DIM = 5, 24, 2


def make_split(n):
    y = torch.randint(0, N_CLASSES, (n,))
    prototypes = torch.randn(N_CLASSES, IN_DIM, generator=torch.Generator().manual_seed(3)) * 2
    return prototypes[y] + torch.randn(n, IN_DIM), y


train_x, train_y = make_split(1000)
test_x, test_y = make_split(200)


# %%
class CenterLossFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feature, label, centers, batch_size):
        ctx.save_for_backward(feature, label, centers, batch_size)
        centers_batch = centers.index_select(0, label.long())
        return (feature - centers_batch).pow(2).sum() / 2.0 / batch_size

    @staticmethod
    def backward(ctx, grad_output):
        feature, label, centers, batch_size = ctx.saved_tensors
        centers_batch = centers.index_select(0, label.long())
        diff = centers_batch - feature
        counts = centers.new_ones(centers.size(0))
        counts = counts.scatter_add(0, label.long(), centers.new_ones(label.size(0)))
        grad_centers = centers.new_zeros(centers.size()).scatter_add(
            0, label.long().unsqueeze(1).expand(feature.size()), diff)
        grad_centers = grad_centers / counts.view(-1, 1)
        return -grad_output * diff / batch_size, None, grad_centers / batch_size, None


class CenterLoss(nn.Module):
    def __init__(self, num_classes, feat_dim):
        super().__init__()
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))

    def forward(self, label, feat):
        batch_size = feat.new_tensor([feat.size(0)])
        return CenterLossFunction.apply(feat, label, self.centers, batch_size)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(IN_DIM, 64), nn.PReLU(), nn.Linear(64, 64), nn.PReLU(),
                                  nn.Linear(64, FEAT_DIM))
        self.classifier = nn.Linear(FEAT_DIM, N_CLASSES)

    def forward(self, x):
        feat = self.body(x)
        return feat, F.log_softmax(self.classifier(feat), dim=1)


def test(model):
    model.eval()
    with torch.no_grad():
        _, logp = model(test_x)
    model.train()
    return (logp.argmax(dim=1) == test_y).float().mean().item()


model = Net()
center_loss = CenterLoss(N_CLASSES, FEAT_DIM)
loss_weight = 0.5
optimizer_model = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
optimizer_centers = torch.optim.SGD(center_loss.parameters(), lr=0.5)


# %% gradwatch
for epoch in range(4):
    perm = torch.randperm(1000)
    for i in range(0, 1000, 100):
        idx = perm[i:i + 100]
        feat, logp = model(train_x[idx])
        nll = F.nll_loss(logp, train_y[idx])
        closs = center_loss(train_y[idx], feat)
        loss = nll + loss_weight * closs
        optimizer_model.zero_grad()
        optimizer_centers.zero_grad()
        loss.backward()
        optimizer_model.step()
        optimizer_centers.step()
    print(f"epoch {epoch}: nll {nll.item():.3f}  center loss {closs.item():.3f}  test accuracy {test(model):.2f}")
