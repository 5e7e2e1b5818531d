# source: https://discuss.pytorch.org/t/gradient-is-lost-when-use-torch-tensor-t1-t2/23261
# bug-class: backward-error/requires-grad-missing
# symptom: loss.backward() raises "element 0 of tensors does not require grad and does not have a grad_fn" on the first step
# diagnosis: `torch.tensor([...])` copies the values of `cos_a`, `cos_b`, ... into a new leaf tensor without history, so the joint angles `theta` are cut off from `loss`; build the vector with `torch.stack`
# expect-error: RuntimeError
# %%
import math

import torch

torch.manual_seed(0)

LINK_LENGTHS = torch.tensor([[1.0, 0.0], [0.0, 0.8]])
TARGETS = [
    torch.tensor([1.2, 0.9]),
    torch.tensor([0.4, 1.5]),
    torch.tensor([1.6, 0.3]),
]


# %%
class TwoLinkArm:
    """Planar two-link arm: joint angles -> end-effector position."""

    def __init__(self):
        self.theta = torch.tensor([0.3, 0.6], requires_grad=True)

    def features(self):
        a, b = self.theta[0], self.theta[1]
        cos_a, sin_a = torch.cos(a), torch.sin(a)
        cos_ab, sin_ab = torch.cos(a + b), torch.sin(a + b)
        feats = torch.tensor([[cos_a, cos_ab], [sin_a, sin_ab]])  # root-cause
        return feats

    def end_effector(self):
        feats = self.features()
        return torch.matmul(feats, LINK_LENGTHS).sum(dim=1)


def reach_loss(arm, target):
    pos = arm.end_effector()
    return ((pos - target) ** 2).sum()


def report(arm, target):
    with torch.no_grad():
        pos = arm.end_effector()
    deg = [round(math.degrees(t), 1) for t in arm.theta.tolist()]
    print(f"angles={deg} pos={[round(p, 3) for p in pos.tolist()]} target={target.tolist()}")


# %% gradwatch
def solve_ik(arm, target, steps=50, lr=0.1):
    optimizer = torch.optim.SGD([arm.theta], lr=lr)
    for step in range(steps):
        optimizer.zero_grad()
        loss = reach_loss(arm, target)
        loss.backward()  # related
        optimizer.step()
        if step % 10 == 0:
            print(f"step {step:3d} loss {loss.item():.4f}")
    return arm


for target in TARGETS:
    arm = solve_ik(TwoLinkArm(), target)
    report(arm, target)
