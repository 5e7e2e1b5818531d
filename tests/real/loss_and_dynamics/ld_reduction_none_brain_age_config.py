# source: https://github.com/aramis-lab/clinicadl/pull/653
# bug-class: loss/reduction-none
# symptom: loss.backward() raises "grad can be implicitly created only for scalar outputs" on the first batch
# diagnosis: the loss config accepts `reduction="none"` and the experiment sets it, so the loss factory builds `SmoothL1Loss(reduction="none")` and the brain-age regressor gets one loss per subject instead of a scalar; drop "none" from the allowed reductions and keep the default mean reduction
# expect-error: RuntimeError
# %%
from dataclasses import dataclass

import torch
import torch.nn as nn

torch.manual_seed(11)

VOL = 12


def make_cohort(n_subjects, noise=0.05):
    ages = torch.empty(n_subjects).uniform_(20.0, 80.0)
    atrophy = (ages - 50.0) / 30.0
    volumes = torch.randn(n_subjects, 1, VOL, VOL, VOL) * noise
    volumes[:, :, 3:9, 3:9, 3:9] += (1.0 - 0.4 * atrophy).view(-1, 1, 1, 1, 1)
    return volumes, (ages - 50.0) / 30.0


def batches(volumes, targets, batch_size):
    for start in range(0, len(volumes), batch_size):
        yield volumes[start:start + batch_size], targets[start:start + batch_size]


train_x, train_y = make_cohort(64)
val_x, val_y = make_cohort(16)


# %%
IMPLEMENTED_REDUCTIONS = ("none", "mean", "sum")  # root-cause


@dataclass
class LossConfig:
    loss: str = "MSELoss"
    reduction: str = "mean"
    beta: float = 1.0


def get_loss_function(config):
    if config.reduction not in IMPLEMENTED_REDUCTIONS:
        raise ValueError(f"{config.reduction} is not a supported reduction")
    kwargs = {"reduction": config.reduction}
    if config.loss == "SmoothL1Loss":
        kwargs["beta"] = config.beta
    return getattr(nn, config.loss)(**kwargs)


class Conv3dRegressor(nn.Module):
    def __init__(self, channels=(4, 8)):
        super().__init__()
        layers, in_ch = [], 1
        for out_ch in channels:
            layers += [nn.Conv3d(in_ch, out_ch, 3, padding=1), nn.BatchNorm3d(out_ch), nn.ReLU(), nn.MaxPool3d(2)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(in_ch * (VOL // 4) ** 3, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, x):
        return self.head(self.features(x)).squeeze(1)


loss_config = LossConfig(loss="SmoothL1Loss", reduction="none", beta=0.5)  # root-cause


# %% gradwatch
def train_epoch(model, criterion, optimizer, batch_size=8):
    model.train()
    total = 0.0
    for volumes, ages in batches(train_x, train_y, batch_size):
        optimizer.zero_grad()
        loss = criterion(model(volumes), ages)
        loss.backward()  # related
        optimizer.step()
        total += loss.item() * len(volumes)
    return total / len(train_x)


def evaluate(model):
    model.eval()
    with torch.no_grad():
        pred = model(val_x)
    return (pred - val_y).abs().mean().item() * 30.0


def run_experiment(config, epochs=4):
    model = Conv3dRegressor()
    criterion = get_loss_function(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(epochs):
        train_loss = train_epoch(model, criterion, optimizer)
        print(f"epoch {epoch}: train {train_loss:.4f} val MAE {evaluate(model):.2f} years")
    return model


model = run_experiment(loss_config)
