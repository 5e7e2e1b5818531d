# source: https://www.codegenes.net/blog/tie-weights-pytorch
# bug-class: clean/tied-weights
# symptom: none: a small next-token model with its output projection tied to the input embedding trains and its perplexity falls
# diagnosis: correct: `self.fc.weight = self.embedding.weight` makes both modules share one Parameter; `model.parameters()` yields it once, it gets gradient from both uses, and the optimizer updates it once per step
# %%
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(14)
VOCAB, EMB, CONTEXT = 60, 32, 3


def synthetic_corpus(n_tokens=3000):
    """Tokens from a sparse random Markov chain, so the next token is predictable from the context."""
    successors = torch.randint(0, VOCAB, (VOCAB, 3))
    tokens = [0]
    for _ in range(n_tokens - 1):
        tokens.append(successors[tokens[-1], torch.randint(0, 3, (1,))].item())
    return torch.tensor(tokens)


corpus = synthetic_corpus()
contexts = torch.stack([corpus[i:i + CONTEXT] for i in range(len(corpus) - CONTEXT)])
next_tokens = corpus[CONTEXT:]
split = int(0.9 * len(next_tokens))


class LanguageModel(nn.Module):
    def __init__(self, vocab_size, embedding_dim):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.mix = nn.Linear(CONTEXT * embedding_dim, embedding_dim)
        self.fc = nn.Linear(embedding_dim, vocab_size)
        # tie the weights of the output layer to the embedding layer
        self.fc.weight = self.embedding.weight

    def forward(self, ctx):
        e = self.embedding(ctx).flatten(1)
        return self.fc(torch.tanh(self.mix(e)))


model = LanguageModel(VOCAB, EMB)
n_tensors = len(list(model.parameters()))
print("parameter tensors:", n_tensors, " tied:", model.fc.weight is model.embedding.weight)


# %% gradwatch
def train_lm(model, epochs=4, batch_size=128, lr=3e-3):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(split)
        for i in range(0, split, batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(model(contexts[idx]), next_tokens[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val = F.cross_entropy(model(contexts[split:]), next_tokens[split:]).item()
        print(f"epoch {epoch}: train loss {loss.item():.3f}  val ppl {math.exp(val):.2f}")


train_lm(model)
