# source: https://github.com/tamarott/SinGAN/pull/117
# bug-class: silent-cut/gan-generator-detach
# symptom: no error; the discriminator trains but the generator's weights never change and its samples stay as bad as at initialisation
# diagnosis: in the generator steps the fake sample is passed as `netD(fake.detach())`, which cuts `errG` off `netG`; `errG.backward()` only fills the discriminator's gradients and `optimizerG.step()` has nothing to apply
# %%
import torch
import torch.nn as nn

torch.manual_seed(117)


class Opt:
    nz = 8
    signal_len = 32
    Dsteps = 3
    Gsteps = 3
    lr_g = 5e-4
    lr_d = 5e-4
    niter = 60


opt = Opt()


def make_real_signal(n):
    t = torch.linspace(0, 6.28, opt.signal_len)
    phase = torch.rand(n, 1) * 0.5
    return torch.sin(t + phase) + 0.05 * torch.randn(n, opt.signal_len)


# %%
def block(n_in, n_out):
    return nn.Sequential(nn.Linear(n_in, n_out), nn.LeakyReLU(0.2))


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(block(opt.nz, 64), block(64, 64), nn.Linear(64, opt.signal_len), nn.Tanh())

    def forward(self, noise):
        return self.body(noise)


class Critic(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(block(opt.signal_len, 64), block(64, 32), nn.Linear(32, 1))

    def forward(self, x):
        return self.body(x)


netG, netD = Generator(), Critic()
optimizerD = torch.optim.Adam(netD.parameters(), lr=opt.lr_d, betas=(0.5, 0.999))
optimizerG = torch.optim.Adam(netG.parameters(), lr=opt.lr_g, betas=(0.5, 0.999))


def sample_quality(n=256):
    with torch.no_grad():
        return (netG(torch.randn(n, opt.nz)).mean(0) - make_real_signal(n).mean(0)).pow(2).mean().item()


# %% gradwatch
def train_single_scale(batch=32):
    g_start = netG.body[2].weight.detach().clone()
    for it in range(opt.niter):
        real = make_real_signal(batch)
        for j in range(opt.Dsteps):
            netD.zero_grad()
            errD_real = -netD(real).mean()
            noise = torch.randn(batch, opt.nz)
            fake = netG(noise)
            errD_fake = netD(fake.detach()).mean()
            (errD_real + errD_fake).backward()
            optimizerD.step()
            for p in netD.parameters():
                p.data.clamp_(-0.05, 0.05)

        for j in range(opt.Gsteps):
            netG.zero_grad()
            output = netD(fake.detach())  # root-cause
            errG = -output.mean()
            errG.backward(retain_graph=True)
            optimizerG.step()  # related

        if it % 20 == 0:
            print(f"iter {it:3d}: errD {(errD_real + errD_fake).item():.4f}  errG {errG.item():.4f}  "
                  f"sample error {sample_quality():.4f}")
    drift = (netG.body[2].weight.detach() - g_start).abs().max().item()
    print(f"generator weight drift after training: {drift:.6f}")


train_single_scale()
