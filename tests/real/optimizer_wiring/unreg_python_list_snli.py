# source: https://github.com/pytorch/pytorch/issues/715
# bug-class: unregistered-parameter/plain-python-list
# symptom: the NLI classifier trains a little (embeddings and classifier move) but the hidden layers never change although they compute gradients; print(model) does not list them; no error
# diagnosis: the hidden `nn.Linear` layers are kept in a plain Python list `self.hids`, so `model.parameters()` does not return them and the Adam optimizer never updates them; wrap the list in `nn.ModuleList`
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)

VOCAB, EMB, N_CLASSES = 200, 32, 3
options = {"n_layers": 2, "n_hid": 64, "act": "Tanh", "lr": 2e-3, "epochs": 5}


def make_pairs(n, length=8):
    """Premise/hypothesis token ids; the label depends on word overlap (entail / neutral / contradict)."""
    premise = torch.randint(1, VOCAB, (n, length))
    hypothesis = torch.randint(1, VOCAB, (n, length))
    labels = torch.randint(0, N_CLASSES, (n,))
    keep = labels == 0
    hypothesis[keep, : length // 2] = premise[keep, : length // 2]
    flip = labels == 2
    hypothesis[flip] = (premise[flip] + 100) % VOCAB
    return premise, hypothesis, labels


train_set = make_pairs(768)
dev_set = make_pairs(256)


# %%
class SNLINet(nn.Module):
    def __init__(self, opts):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, EMB, padding_idx=0)
        indim = 4 * EMB
        self.hids = []  # root-cause
        for li in range(opts["n_layers"]):
            self.hids.append([nn.Linear(indim, opts["n_hid"]), getattr(nn, opts["act"])()])
            indim = opts["n_hid"]
        self.classifier = nn.Linear(opts["n_hid"], N_CLASSES)

    def encode(self, tokens):
        return self.embed(tokens).mean(dim=1)

    def forward(self, premise, hypothesis):
        u, v = self.encode(premise), self.encode(hypothesis)
        h = torch.cat([u, v, (u - v).abs(), u * v], dim=1)
        for linear, act in self.hids:
            h = act(linear(h))
        return self.classifier(h)


def iterate(data, batch_size=64):
    p, h, y = data
    for i in range(0, len(y), batch_size):
        yield p[i:i + batch_size], h[i:i + batch_size], y[i:i + batch_size]


@torch.no_grad()
def accuracy(model, data):
    p, h, y = data
    return (model(p, h).argmax(dim=1) == y).float().mean().item()


model = SNLINet(options)
print(model)

# %% gradwatch
optimizer = torch.optim.Adam(model.parameters(), lr=options["lr"])
first_hidden = model.hids[0][0].weight.detach().clone()

for epoch in range(options["epochs"]):
    running = 0.0
    for p, h, y in iterate(train_set):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(p, h), y)
        loss.backward()
        optimizer.step()  # related
        running += loss.item()
    print(f"epoch {epoch}  train loss {running / 12:.4f}  dev acc {accuracy(model, dev_set):.3f}")

print("first hidden layer changed:", not torch.equal(first_hidden, model.hids[0][0].weight))
print("its grad norm:", round(model.hids[0][0].weight.grad.norm().item(), 4))
