# source: https://github.com/lhoyer/DAFormer/issues/59
# bug-class: clean/ema-teacher-no-grad
# symptom: none; the student improves on the shifted target domain and the EMA teacher follows it
# diagnosis: correct: the teacher is never trained by backprop; its weights are updated only by the exponential moving average under `torch.no_grad()`, and its pseudo-labels (an argmax) are targets, so no gradient has to flow through them
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(59)

IN_DIM, N_CLASSES = 10, 4
CENTERS = torch.randn(N_CLASSES, IN_DIM) * 2.0


def make_domain(n, shift):
    y = torch.randint(0, N_CLASSES, (n,))
    x = CENTERS[y] + torch.randn(n, IN_DIM) + shift
    return x, y


src_x, src_y = make_domain(512, 0.0)
tgt_x, tgt_y = make_domain(512, 0.8)  # target labels are only used for evaluation


# %%
def make_net():
    return nn.Sequential(nn.Linear(IN_DIM, 64), nn.ReLU(), nn.Linear(64, N_CLASSES))


student = make_net()
teacher = make_net()
teacher.load_state_dict(student.state_dict())
for param in teacher.parameters():
    param.detach_()
optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)


def update_ema(alpha, step):
    alpha = min(1 - 1 / (step + 1), alpha)
    with torch.no_grad():
        for ema_p, p in zip(teacher.parameters(), student.parameters()):
            ema_p.mul_(alpha).add_(p, alpha=1 - alpha)


def accuracy(net, x, y):
    with torch.no_grad():
        return (net(x).argmax(dim=1) == y).float().mean().item()


# %% gradwatch
step = 0
for epoch in range(6):
    perm = torch.randperm(len(src_x))
    for i in range(0, len(src_x), 64):
        idx = perm[i:i + 64]
        with torch.no_grad():
            probs = F.softmax(teacher(tgt_x[idx]), dim=1)
            confidence, pseudo_label = probs.max(dim=1)
            weight = (confidence > 0.9).float().mean()
        src_loss = F.cross_entropy(student(src_x[idx]), src_y[idx])
        mix_loss = weight * F.cross_entropy(student(tgt_x[idx]), pseudo_label.detach())
        loss = src_loss + mix_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        update_ema(alpha=0.99, step=step)
        step += 1
    print(f"epoch {epoch}: src loss {src_loss.item():.3f}  pseudo weight {weight.item():.2f}  "
          f"target acc student {accuracy(student, tgt_x, tgt_y):.3f} teacher {accuracy(teacher, tgt_x, tgt_y):.3f}")
