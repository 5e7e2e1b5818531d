# source: https://github.com/NaJaeMin92/pytorch-DANN/issues/7
# bug-class: loss-and-dynamics/double-softmax
# symptom: the compiled domain-adversarial model trains very slowly: in 5 epochs the label loss only creeps from 1.386 to 1.295 (without the final softmax layers it reaches 0.12)
# diagnosis: the class classifier and the domain discriminator end in `nn.Softmax`, and their outputs go into `nn.CrossEntropyLoss`, which applies `log_softmax` itself; the second softmax squashes the logits into [0, 1] and flattens the gradients; the fix drops the `Softmax` layers
# %%
import torch
import torch.nn as nn

torch.manual_seed(7)

IN_DIM, N_CLASSES = 20, 4


class GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output.neg() * ctx.alpha, None


class DANN(nn.Module):
    def __init__(self):
        super().__init__()
        self.extractor = nn.Sequential(nn.Linear(IN_DIM, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, N_CLASSES),
                                        nn.Softmax(dim=1))  # root-cause
        self.discriminator = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2),
                                           nn.Softmax(dim=1))  # root-cause

    def forward(self, x, alpha):
        features = self.extractor(x)
        return self.classifier(features), self.discriminator(GradReverse.apply(features, alpha))


# backend="aot_eager" traces the same graph as inductor and needs no C++ compiler
model = torch.compile(DANN(), backend="aot_eager")

centers = 2.0 * torch.randn(N_CLASSES, IN_DIM)
y_source = torch.randint(0, N_CLASSES, (256,))
x_source = centers[y_source] + torch.randn(256, IN_DIM)
x_target = centers[torch.randint(0, N_CLASSES, (256,))] + torch.randn(256, IN_DIM) + 0.5  # shifted domain

class_criterion = nn.CrossEntropyLoss()
domain_criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

# %% gradwatch
for epoch in range(5):
    for i in range(0, 256, 32):
        xs, ys, xt = x_source[i:i + 32], y_source[i:i + 32], x_target[i:i + 32]
        class_out, domain_src = model(xs, 0.1)
        _, domain_tgt = model(xt, 0.1)
        domain_labels = torch.cat([torch.zeros(32), torch.ones(32)]).long()
        class_loss = class_criterion(class_out, ys)  # related
        domain_loss = domain_criterion(torch.cat([domain_src, domain_tgt]), domain_labels)
        loss = class_loss + domain_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch}: class loss {class_loss.item():.4f}  domain loss {domain_loss.item():.4f}")
