# source: https://www.kinetiqvision.com/learn/deep-reinforcement-learning/policy-gradients/actor-critic-architecture
# bug-class: clean/two-optimizers-two-models
# symptom: none: a one-step actor-critic walks toward the goal for 12 short episodes; both networks are updated at every step
# diagnosis: correct: the actor and the critic are separate modules with separate optimizers (and learning rates); each optimizer is zeroed and stepped for its own loss, the TD target is computed under no_grad and the actor uses the detached TD error, so no gradient leaks into the wrong network
# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(10)
gamma = 0.95
MOVES = torch.tensor([[0.1, 0.0], [-0.1, 0.0], [0.0, 0.1], [0.0, -0.1]])
GOAL = torch.tensor([0.6, -0.4])


class GridWalk:
    """Continuous 2-D walk: reach GOAL within 20 moves; reward is minus the distance."""

    def reset(self):
        self.pos = torch.zeros(2)
        self.t = 0
        return self.pos.clone()

    def step(self, action):
        self.pos = (self.pos + MOVES[action]).clamp(-1, 1)
        self.t += 1
        dist = (self.pos - GOAL).norm().item()
        done = dist < 0.1 or self.t >= 20
        return self.pos.clone(), -dist, float(done)


class Actor(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 4))

    def forward(self, s):
        return torch.distributions.Categorical(logits=self.net(s))


class Critic(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 1))

    def forward(self, s):
        return self.net(s).squeeze(-1)


env = GridWalk()
actor, critic = Actor(), Critic()
actor_optimizer = torch.optim.Adam(actor.parameters(), lr=3e-3)
critic_optimizer = torch.optim.Adam(critic.parameters(), lr=1e-2)

# %% gradwatch
for episode in range(12):
    obs, done, ret = env.reset(), 0.0, 0.0
    while not done:
        dist = actor(obs)
        action = dist.sample()
        log_prob = dist.log_prob(action)
        obs2, reward, done = env.step(action.item())
        ret += reward

        v = critic(obs)
        with torch.no_grad():
            v2 = critic(obs2)
        td_target = torch.tensor(reward) + gamma * (1.0 - done) * v2
        delta = td_target - v

        critic_loss = delta.pow(2)
        critic_optimizer.zero_grad()
        critic_loss.backward()
        critic_optimizer.step()

        actor_loss = -log_prob * delta.detach()
        actor_optimizer.zero_grad()
        actor_loss.backward()
        actor_optimizer.step()
        obs = obs2
    if episode % 3 == 2:
        print(f"episode {episode + 1}: return {ret:.2f} steps {env.t}")
