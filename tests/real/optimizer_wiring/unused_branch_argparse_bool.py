# source: https://github.com/deepsense-ai/Distributed-BA3C/pull/3
# bug-class: unused-parameter/branch-never-taken
# symptom: the actor-critic update runs and the policy loss moves, but no value loss is ever printed and the value head's weights never change; no error
# diagnosis: `--policy_only` is declared with `type=bool`, so the string "False" parses to True; `forward` then always skips the `value_head` branch and its parameters, which are in the optimizer, never receive a gradient
# %%
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F

parser = argparse.ArgumentParser(description="batch A3C update on logged rollouts")
parser.add_argument("--obs_dim", type=int, default=10)
parser.add_argument("--n_actions", type=int, default=4)
parser.add_argument("--hidden", type=int, default=48)
parser.add_argument("--policy_only", type=bool, default=False)  # root-cause
parser.add_argument("--entropy_beta", type=float, default=0.01)
parser.add_argument("--lr", type=float, default=3e-3)
parser.add_argument("--epochs", type=int, default=6)
args = parser.parse_args(["--policy_only", "False", "--epochs", "6"])
print("policy_only =", args.policy_only)

# %%
torch.manual_seed(11)


def collect_rollouts(n, obs_dim, n_actions, gamma=0.97, horizon=8):
    """Fake logged experience: observations, taken actions and discounted returns."""
    obs = torch.randn(n, obs_dim)
    w = torch.randn(obs_dim, n_actions)
    actions = (obs @ w + 2.0 * torch.randn(n, n_actions)).argmax(dim=1)
    best = (obs @ torch.randn(obs_dim, n_actions)).argmax(dim=1)
    rewards = torch.randn(n, horizon) * 0.1 + (actions == best).float().unsqueeze(1)
    discounts = gamma ** torch.arange(horizon, dtype=torch.float32)
    returns = (rewards * discounts).sum(dim=1)
    return obs, actions, returns


class PolicyValueNet(nn.Module):
    def __init__(self, obs_dim, n_actions, hidden, policy_only=False):
        super().__init__()
        self.policy_only = policy_only
        self.torso = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.policy_head = nn.Linear(hidden, n_actions)
        self.value_head = nn.Linear(hidden, 1)

    def forward(self, obs):
        h = self.torso(obs)
        logits = self.policy_head(h)
        value = None
        if not self.policy_only:
            value = self.value_head(h).squeeze(-1)
        return logits, value


def batches(obs, actions, returns, batch_size=64):
    for i in range(0, len(obs), batch_size):
        yield obs[i:i + batch_size], actions[i:i + batch_size], returns[i:i + batch_size]


obs, actions, returns = collect_rollouts(512, args.obs_dim, args.n_actions)


# %% gradwatch
def a3c_loss(net, o, a, ret, beta):
    logits, value = net(o)
    logp = F.log_softmax(logits, dim=1)
    baseline = value.detach() if value is not None else ret.mean()
    advantage = ret - baseline
    advantage = ((advantage - advantage.mean()) / (advantage.std() + 1e-6)).clamp(min=0.0)
    policy_loss = -(logp.gather(1, a.unsqueeze(1)).squeeze(1) * advantage).mean()
    entropy = -(logp.exp() * logp).sum(dim=1).mean()
    loss = policy_loss - beta * entropy
    value_loss = None
    if value is not None:
        value_loss = F.mse_loss(value, ret)
        loss = loss + 0.5 * value_loss
    return loss, policy_loss, value_loss


def train(net, epochs, lr, beta):
    optimizer = torch.optim.RMSprop(net.parameters(), lr=lr)
    for epoch in range(epochs):
        total_pl, total_vl, n = 0.0, 0.0, 0
        for o, a, ret in batches(obs, actions, returns):
            loss, pl, vl = a3c_loss(net, o, a, ret, beta)
            total_pl += pl.item()
            total_vl += vl.item() if vl is not None else 0.0
            n += 1
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()  # related
        msg = f"epoch {epoch}: policy loss {total_pl / n:.4f}"
        if vl is not None:
            msg += f"  value loss {total_vl / n:.4f}"
        print(msg)


net = PolicyValueNet(args.obs_dim, args.n_actions, args.hidden, policy_only=args.policy_only)
v_before = net.value_head.weight.detach().clone()
train(net, args.epochs, args.lr, args.entropy_beta)
print("value head changed:", not torch.equal(v_before, net.value_head.weight))
