# source: https://github.com/Hunter-DDM/knowledge-neurons/issues/14
# bug-class: backward-error/inplace-leaf-view
# symptom: editing the found knowledge neuron, `...output.dense.weight[:, pos] -= ...` raises "a view of a leaf Variable that requires grad is being used in an in-place operation"
# diagnosis: `output.dense.weight` is a trainable leaf parameter; subtracting/adding word embeddings into its column through the view `weight[:, pos]` outside `torch.no_grad()` is refused by autograd; do the edit under `torch.no_grad()` (or on `.data`)
# expect-error: RuntimeError
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(14)
VOCAB, D_MODEL, D_FF, SEQ = 30, 32, 64, 6


def make_facts(n):
    """Each 'sentence' holds a subject token; the masked object is a fixed function of it."""
    subj = torch.randint(0, 10, (n,))
    tokens = torch.randint(10, VOCAB, (n, SEQ))
    tokens[:, 1] = subj
    tokens[:, -1] = 0
    return tokens, (subj * 3 + 1) % VOCAB


train_tokens, train_obj = make_facts(512)


# %%
class Output(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(D_FF, D_MODEL)

    def forward(self, h, resid):
        return resid + self.dense(h)


class FFNLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.intermediate = nn.Linear(D_MODEL, D_FF)
        self.output = Output()

    def forward(self, x, scale=None):
        h = F.gelu(self.intermediate(x))
        if scale is not None:
            h = h * scale
        return self.output(h, x)


class TinyMLM(nn.Module):
    def __init__(self, n_layers=2):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, D_MODEL)
        self.layers = nn.ModuleList(FFNLayer() for _ in range(n_layers))

    def forward(self, tokens, edit_layer=None, scale=None):
        x = self.emb(tokens).mean(1, keepdim=True).expand(-1, SEQ, -1)
        for i, layer in enumerate(self.layers):
            x = layer(x, scale if i == edit_layer else None)
        return x[:, -1] @ self.emb.weight.t()


def train(model, epochs=4, batch_size=64):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(epochs):
        for i in range(0, len(train_tokens), batch_size):
            loss = F.cross_entropy(model(train_tokens[i:i + batch_size]), train_obj[i:i + batch_size])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"epoch {epoch}: loss {loss.item():.4f}  acc {accuracy(model):.3f}")


def accuracy(model):
    with torch.no_grad():
        return (model(train_tokens).argmax(-1) == train_obj).float().mean().item()


# %%
model = TinyMLM()
train(model)


# %% gradwatch
def neuron_attribution(model, tokens, target, layer, steps=8):
    total = torch.zeros(D_FF)
    for k in range(1, steps + 1):
        scale = torch.full((D_FF,), k / steps, requires_grad=True)
        logp = model(tokens, edit_layer=layer, scale=scale).log_softmax(-1)[:, target].sum()
        total += torch.autograd.grad(logp, scale)[0]
    return total / steps


def edit_knowledge(model, subj, new_obj, layer=1, lambdas=(1.0, 8.0)):
    tokens = train_tokens[train_tokens[:, 1] == subj][:8]
    ori_obj = (subj * 3 + 1) % VOCAB
    pos = neuron_attribution(model, tokens, ori_obj, layer).argmax().item()
    ori_pred_emb = model.emb.weight[ori_obj]
    tgt_emb = model.emb.weight[new_obj]
    print(f"subject {subj}: top knowledge neuron {pos} in layer {layer}")
    model.layers[layer].output.dense.weight[:, pos] -= ori_pred_emb * lambdas[0]  # root-cause
    model.layers[layer].output.dense.weight[:, pos] += tgt_emb * lambdas[1]  # root-cause
    with torch.no_grad():
        return model(tokens).argmax(-1).tolist()


print("predictions after edit:", edit_knowledge(model, subj=3, new_obj=20))
