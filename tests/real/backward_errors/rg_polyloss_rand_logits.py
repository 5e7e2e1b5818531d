# source: https://github.com/abhuse/polyloss-pytorch/issues/4
# bug-class: backward-error/requires-grad-missing
# symptom: the loss sanity check raises "element 0 of tensors does not require grad and does not have a grad_fn" at loss.backward()
# diagnosis: the example logits are made by `torch.rand(...)` without `requires_grad=True`, and no parameter takes part, so the Poly-1 loss has no graph to backpropagate through
# expect-error: RuntimeError
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(7)
NUM_CLASSES = 5
BATCH_SIZE = 16


# %%
class Poly1CrossEntropyLoss(nn.Module):
    """Poly-1 loss: cross entropy plus epsilon * (1 - p_t)."""

    def __init__(self, num_classes, epsilon=1.0, reduction="mean"):
        super().__init__()
        self.num_classes = num_classes
        self.epsilon = epsilon
        self.reduction = reduction

    def forward(self, logits, labels):
        labels_onehot = F.one_hot(labels, num_classes=self.num_classes).to(logits.dtype)
        pt = torch.sum(labels_onehot * F.softmax(logits, dim=-1), dim=-1)
        ce = F.cross_entropy(logits, labels, reduction="none")
        poly1 = ce + self.epsilon * (1 - pt)
        if self.reduction == "mean":
            return poly1.mean()
        if self.reduction == "sum":
            return poly1.sum()
        return poly1


def make_batch(batch_size, num_classes):
    logits = torch.rand([batch_size, num_classes])  # root-cause
    labels = torch.randint(0, num_classes, size=(batch_size,))
    return logits, labels


def describe(name, tensor):
    print(f"{name}: shape={tuple(tensor.shape)} mean={tensor.mean().item():.4f}")


# %% gradwatch
def sanity_check(loss_fn, rounds=3):
    """Check that the loss is finite and that gradients come back, as in the README example."""
    for r in range(rounds):
        logits, labels = make_batch(BATCH_SIZE, NUM_CLASSES)
        describe("logits", logits)
        loss = loss_fn(logits, labels)
        print(f"round {r}: poly1 loss = {loss.item():.4f}")
        loss.backward()  # related
        describe("grad", logits.grad)


for eps in (1.0, 2.0):
    print(f"epsilon = {eps}")
    sanity_check(Poly1CrossEntropyLoss(num_classes=NUM_CLASSES, epsilon=eps))
