# source: https://github.com/feedly/transfer-nlp/pull/14
# bug-class: stale-optimizer/head-replaced-after-optimizer
# symptom: pre-training on the topic task works, but after `finetune_last_layer` the intent-task loss and accuracy do not move at all; no error
# diagnosis: `finetune_last_layer` freezes the network and puts a new final `nn.Linear` into `model.classifier`, but the trainer keeps the optimizer it built over the old parameters; the new layer gets gradients that nothing applies (the PR adds `reset_optimizer()` after the replacement)
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(17)
VOCAB, SEQ = 300, 12


def make_task(n, n_labels, seed_offset):
    g = torch.Generator().manual_seed(100 + seed_offset)
    keywords = torch.randint(1, VOCAB, (n_labels, 4), generator=g)
    labels = torch.randint(0, n_labels, (n,), generator=g)
    tokens = torch.randint(1, VOCAB, (n, SEQ), generator=g)
    tokens[:, :3] = keywords[labels][:, torch.randint(0, 4, (3,), generator=g)]
    return tokens, labels


topics = make_task(512, 4, 0)   # task A: 4 topics
intents = make_task(256, 3, 1)  # task B: 3 intents


# %%
class TextClassifier(nn.Module):
    def __init__(self, num_labels, emb=32, hidden=64):
        super().__init__()
        self.num_labels = num_labels
        self.embedding = nn.EmbeddingBag(VOCAB, emb, mode="mean")
        self.classifier = nn.Sequential(nn.Linear(emb, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, num_labels))

    def forward(self, tokens):
        return self.classifier(self.embedding(tokens))


class Trainer:
    def __init__(self, model, lr=5e-3):
        self.model = model
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)

    def train(self, data, epochs, name):
        tokens, labels = data
        for epoch in range(epochs):
            self.model.train()
            for i in range(0, len(labels), 64):
                logits = self.model(tokens[i:i + 64])
                loss = F.cross_entropy(logits, labels[i:i + 64])
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()  # related
            self.model.eval()
            with torch.no_grad():
                acc = (self.model(tokens).argmax(1) == labels).float().mean().item()
            print(f"[{name}] epoch {epoch}: loss {loss.item():.4f} acc {acc:.3f}")

    def finetune_last_layer(self, num_labels):
        # freeze all layers
        for param in self.model.parameters():
            param.requires_grad = False
        # modify the last layer
        number_features = self.model.classifier[-1].in_features
        features = list(self.model.classifier.children())[:-1]  # remove last layer
        features.extend([nn.Linear(number_features, num_labels)])
        self.model.classifier = nn.Sequential(*features)  # root-cause
        self.model.num_labels = num_labels


# %% gradwatch
trainer = Trainer(TextClassifier(num_labels=4))
trainer.train(topics, epochs=3, name="topics")
trainer.finetune_last_layer(num_labels=3)
trainer.train(intents, epochs=4, name="intents")
