# source: https://github.com/pytorch/examples/issues/257
# bug-class: clean/reinforce-log-prob
# symptom: none; the running reward rises as the policy learns
# diagnosis: correct: the policy loss is `-m.log_prob(action) * return`, which keeps the graph to the policy network; `.item()` is used only to hand the sampled action to the environment and to log rewards/losses
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Categorical

torch.manual_seed(257)

OBS_DIM, N_ACTIONS, EP_LEN, GAMMA = 4, 3, 10, 0.99
W_ENV = torch.randn(OBS_DIM, N_ACTIONS)


class ContextBanditEnv:
    """Each step shows a random context; the rewarded action depends linearly on it."""

    def reset(self):
        self.t = 0
        self.obs = torch.randn(OBS_DIM)
        return self.obs

    def step(self, action):
        best = int((self.obs @ W_ENV).argmax())
        reward = 1.0 if action == best else 0.0
        self.t += 1
        self.obs = torch.randn(OBS_DIM)
        return self.obs, reward, self.t >= EP_LEN


# %%
class Policy(nn.Module):
    def __init__(self):
        super().__init__()
        self.affine1 = nn.Linear(OBS_DIM, 64)
        self.affine2 = nn.Linear(64, N_ACTIONS)
        self.saved_log_probs, self.rewards = [], []

    def forward(self, x):
        return F.softmax(self.affine2(F.relu(self.affine1(x))), dim=-1)


policy = Policy()
optimizer = torch.optim.Adam(policy.parameters(), lr=2e-2)
env = ContextBanditEnv()


def select_action(state):
    probs = policy(state.unsqueeze(0))
    m = Categorical(probs)
    action = m.sample()
    policy.saved_log_probs.append(m.log_prob(action))
    return action.item()


def finish_episode():
    R, returns = 0.0, []
    for r in policy.rewards[::-1]:
        R = r + GAMMA * R
        returns.insert(0, R)
    returns = torch.tensor(returns)
    returns = (returns - returns.mean()) / (returns.std() + 1e-8)
    policy_loss = torch.cat([-lp * R for lp, R in zip(policy.saved_log_probs, returns)]).sum()
    optimizer.zero_grad()
    policy_loss.backward()
    optimizer.step()
    del policy.rewards[:], policy.saved_log_probs[:]
    return policy_loss.item()


# %% gradwatch
running_reward = 0.0
for i_episode in range(100):
    state, ep_reward, done = env.reset(), 0.0, False
    while not done:
        action = select_action(state)
        state, reward, done = env.step(action)
        policy.rewards.append(reward)
        ep_reward += reward
    running_reward = 0.05 * ep_reward + 0.95 * running_reward
    loss_value = finish_episode()
    if i_episode % 25 == 0:
        print(f"episode {i_episode:3d}: last reward {ep_reward:.1f}  running reward {running_reward:.2f}  "
              f"loss {loss_value:.3f}")
print(f"final running reward {running_reward:.2f} of {EP_LEN}")
