# source: https://github.com/patrickloeber/pytorchTutorial/issues/23
# bug-class: clean/autograd-tutorial-backward-demo
# symptom: none; the tutorial calls backward() on small tensors only to print their gradients, then fits a line by hand
# diagnosis: correct: `x`, `weights` and `w` are leaves created with requires_grad=True, each backward() is on a scalar, and `.grad` is zeroed between the calls on purpose
# %%
import torch

torch.manual_seed(0)


def show(name, t):
    print(name, [round(v, 4) for v in t.flatten().tolist()])


# %% gradwatch
# 1) gradients of a tiny computation
x = torch.randn(3, requires_grad=True)
y = x + 2
z = (y * y * 2).mean()
z.backward()
show("dz/dx", x.grad)
show("expected", (4 * (x.detach() + 2) / 3))

# 2) gradients accumulate until they are zeroed
weights = torch.ones(4, requires_grad=True)
for epoch in range(3):
    model_output = (weights * 3).sum()
    model_output.backward()
    show(f"epoch {epoch} grad", weights.grad)
    weights.grad.zero_()

# 3) the same mechanics fit f(x) = 2x by hand
X = torch.tensor([1.0, 2.0, 3.0, 4.0])
Y = torch.tensor([2.0, 4.0, 6.0, 8.0])
w = torch.tensor(0.0, requires_grad=True)


def forward(inp):
    return w * inp


def loss_fn(y_true, y_pred):
    return ((y_pred - y_true) ** 2).mean()


learning_rate = 0.01
print(f"prediction before training: f(5) = {forward(5).item():.3f}")
for epoch in range(40):
    l = loss_fn(Y, forward(X))
    l.backward()
    with torch.no_grad():
        w -= learning_rate * w.grad
    w.grad.zero_()
    if epoch % 10 == 0:
        print(f"epoch {epoch + 1}: w = {w.item():.3f}, loss = {l.item():.6f}")
print(f"prediction after training: f(5) = {forward(5).item():.3f}")
