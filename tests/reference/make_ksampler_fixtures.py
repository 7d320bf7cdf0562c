#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The ddpm authors
"""Reference trajectories for ddpm's k-diffusion family of samplers (Heun, LMS, DPM2, DPM2 ancestral,
DPM++ 2S ancestral, Euler ancestral with eta and s_noise), written to tests/data/samplers/ksamplers.json.

The trajectories come from k-diffusion's own sampling functions (sample_heun, sample_lms, sample_dpm_2,
sample_dpm_2_ancestral, sample_dpmpp_2s_ancestral, sample_euler_ancestral) imported from a checkout given
by path, and the interleaved timesteps of diffusers' HeunDiscreteScheduler and KDPM2DiscreteScheduler from
a diffusers checkout given by path; nothing of either is copied here. They are driven in float64 by the
exact E[eps | x_t] of the Gaussian mixture of tests/samplers/sampler_support.hpp (the Mixture class of
make_sampler_fixtures.py) and by stored noise:

  - k-diffusion works on x_ve = x / sqrt(alpha_bar) = x0 + sigma eps and calls a denoiser D(x_ve, sigma).
    ddpm works on the variance-preserving x and calls the model with an integer training timestep. The
    denoiser here is that model seen through the conversion ddpm documents: x = x_ve / sqrt(1 + sigma^2),
    t = round(sigma_to_t(sigma)) (the nearest training timestep), out = the mixture's prediction of the
    case's kind at alpha_bar[t], x0 = the conversion of out at alpha_bar = 1 / (1 + sigma^2) (the sigma the
    sampler is at, as diffusers' schedulers do), then ddpm's bound (clip) when the case has one.
    Each (sigma, t) the denoiser sees is recorded: the C++ test checks the sampler's timesteps() against it.
  - The run starts from x_ve = sqrt(1 + sigma_0^2) x_T (x_T the stored standard normal); with churn, from
    sqrt(1 + sigma_hat_0^2) x_T with the first churn draw set to 0 (ddpm takes x_T at sigma_hat_0, see
    docs/samplers.md section 9). The noise draws (torch.randn_like inside sample_heun / sample_dpm_2, the
    noise_sampler of the ancestral ones) come from a stored list, in call order.
  - Sigma grids (float64; k-diffusion takes any sigmas tensor): sigma[t] of the spaced timesteps (diffusers'
    EulerDiscreteScheduler spacing), or Karras et al.'s ramp between the first and last of them, as
    make_sampler_fixtures.euler_grid builds them; a final 0.
  - LMS coefficients: k-diffusion integrates the Lagrange basis with scipy.integrate.quad (Debian's
    python3-scipy), which is exact to rounding for these cubic polynomials.

Run:  /usr/bin/python3 tests/reference/make_ksampler_fixtures.py /work/ext/k-diffusion /work/ext/diffusers
k-diffusion's sampling.py imports torchsde and torchdiffeq at module level, and its utils.py imports
safetensors and torchvision; where those are missing, empty modules stand in for them (the functions used
here do not touch them).
"""

import importlib
import json
import math
import os
import sys
import types

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_sampler_fixtures as ref  # noqa: E402  (schedules, mixture, grids: shared with the other fixtures)

OUT = os.path.join(HERE, "..", "data", "samplers", "ksamplers.json")
SEED = 20261207


def import_k_diffusion(path):
    for name in ["torchsde", "torchdiffeq", "safetensors", "torchvision", "torchvision.transforms",
                 "torchvision.transforms.functional"]:
        try:
            importlib.import_module(name)
        except ImportError:
            m = types.ModuleType(name)
            if name == "torchdiffeq":
                m.odeint = None
            sys.modules[name] = m
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
    sys.modules["torchvision.transforms"].functional = sys.modules["torchvision.transforms.functional"]
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = [os.path.join(path, "k_diffusion")]
    sys.modules["k_diffusion"] = pkg
    return importlib.import_module("k_diffusion.sampling")


def import_diffusers(path):
    # Debian lacks huggingface_hub and more: make_unet_grad_fixture's importer stubs them and creates the
    # diffusers packages bare; the schedulers package is created bare too, so that only the two scheduler
    # modules are imported.
    from make_unet_grad_fixture import import_diffusers_unet
    import_diffusers_unet(path)
    m = types.ModuleType("diffusers.schedulers")
    m.__path__, m.__package__ = [os.path.join(path, "src", "diffusers", "schedulers")], "diffusers.schedulers"
    sys.modules["diffusers.schedulers"] = m
    heun = importlib.import_module("diffusers.schedulers.scheduling_heun_discrete")
    kdpm2 = importlib.import_module("diffusers.schedulers.scheduling_k_dpm_2_discrete")
    return heun.HeunDiscreteScheduler, kdpm2.KDPM2DiscreteScheduler


class Denoiser:
    """D(x_ve, sigma) of the mixture as ddpm's samplers see it (module docstring); records (sigma, t)."""

    def __init__(self, ab, kind, clipping):
        self.ab, self.kind, self.clipping = ab, kind, clipping
        self.mix = ref.Mixture(ab, **ref.MIXTURE)
        self.log_table = np.log(ref.sigma_table(ab))
        self.calls = []

    def output(self, x, t):
        ab = self.ab[t]
        eps = self.mix.eps_at(x, ab)
        if self.kind == "epsilon":
            return eps
        x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
        if self.kind == "sample":
            return x0
        return math.sqrt(ab) * eps - math.sqrt(1 - ab) * x0

    def __call__(self, x_ve, sigma):
        s = float(sigma.reshape(-1)[0])
        t = int(np.round(ref.sigma_to_t(s, self.log_table)))
        self.calls.append((s, t))
        xv = x_ve.numpy() / math.sqrt(1 + s * s)
        out = self.output(xv, t)
        x0 = ref.bound(ref.to_x0(self.kind, out, xv, 1.0 / (1.0 + s * s)), self.clipping)
        return torch.from_numpy(np.ascontiguousarray(x0))


class Noise:
    """The stored draws, in call order; `zero_first` makes the first draw 0 (the first churn)."""

    def __init__(self, draws, zero_first=False):
        self.draws, self.used, self.zero_first = draws, 0, zero_first

    def next(self):
        z = np.zeros_like(self.draws[0]) if (self.zero_first and self.used == 0) else self.draws[self.used]
        self.used += 1
        return torch.from_numpy(z.copy())


def run(ks, name, ab, opts, kind, clipping, x_T, draws):
    N = opts["num_inference_steps"]
    ts, sig = ref.euler_grid(ab, N, opts.get("timestep_spacing", "linspace"), opts.get("use_karras_sigmas", False))
    sig[-1] = 0.0
    den = Denoiser(ab, kind, clipping)
    sigmas = torch.tensor(sig, dtype=torch.float64)
    churn = opts.get("s_churn", 0.0)
    s0 = sig[0]
    if churn > 0.0 and opts.get("s_tmin", 0.0) <= s0 <= opts.get("s_tmax", math.inf):
        s0 = s0 * (1 + min(churn / N, 2 ** 0.5 - 1))
    x = torch.from_numpy(x_T * math.sqrt(1 + s0 * s0))
    noise = Noise(draws, zero_first=churn > 0.0)
    checkpoints = []

    def callback(d):
        # x at the start of interval i (after its churn), variance-preserving, and the model call it precedes
        s = float(d["sigma_hat"])
        checkpoints.append({"call": len(den.calls) - 1, "x": ref.flat(d["x"].numpy() / math.sqrt(1 + s * s))})

    original = torch.randn_like
    torch.randn_like = lambda t, **kw: noise.next()
    try:
        extra = {k: opts[k] for k in ["s_churn", "s_tmin", "s_tmax", "s_noise", "eta", "order"] if k in opts}
        ns = {"noise_sampler": lambda s, sn: noise.next()} if name in ["dpm_2_ancestral", "dpmpp_2s_ancestral",
                                                                        "euler_ancestral"] else {}
        out = getattr(ks, "sample_" + name)(den, x, sigmas, disable=True, callback=callback, **extra, **ns)
    finally:
        torch.randn_like = original
    # the final x is at sigma 0 (x_vp = x_ve)
    return {"sigmas": ref.flat(sig), "grid_timesteps": [int(t) for t in ts],
            "call_sigmas": [c[0] for c in den.calls], "call_timesteps": [c[1] for c in den.calls],
            "noise_used": noise.used, "checkpoints": checkpoints, "x": ref.flat(out.numpy())}


def main():
    Heun, KDPM2 = import_diffusers(sys.argv[2])  # first: its importer's stubs serve k-diffusion's imports too
    ks = import_k_diffusion(sys.argv[1])
    rng = np.random.default_rng(SEED)
    ab = ref.alphas_cumprod(ref.LINEAR)
    B = 4
    x_T = rng.standard_normal((B, 2))
    draws = rng.standard_normal((64, B, 2))
    cases = []
    configs = [
        ("heun", {"num_inference_steps": 10}, "epsilon", None),
        ("heun", {"num_inference_steps": 8, "use_karras_sigmas": True}, "velocity", None),
        ("heun", {"num_inference_steps": 6, "timestep_spacing": "trailing"}, "sample", {"mode": "clip", "range": 3.0}),
        ("heun", {"num_inference_steps": 10, "s_churn": 2.0, "s_tmin": 0.5, "s_tmax": 50.0, "s_noise": 1.003}, "epsilon", None),
        ("heun", {"num_inference_steps": 6, "s_churn": 1.0, "use_karras_sigmas": True}, "epsilon", None),
        ("lms", {"num_inference_steps": 10}, "epsilon", None),
        ("lms", {"num_inference_steps": 8, "use_karras_sigmas": True}, "velocity", None),
        ("lms", {"num_inference_steps": 6, "timestep_spacing": "trailing", "order": 3}, "sample", {"mode": "clip", "range": 3.0}),
        ("lms", {"num_inference_steps": 7, "order": 2}, "epsilon", None),
        ("dpm_2", {"num_inference_steps": 10}, "epsilon", None),
        ("dpm_2", {"num_inference_steps": 8, "use_karras_sigmas": True}, "velocity", None),
        ("dpm_2", {"num_inference_steps": 6, "timestep_spacing": "trailing"}, "sample", {"mode": "clip", "range": 3.0}),
        ("dpm_2", {"num_inference_steps": 10, "s_churn": 2.0, "s_tmin": 0.5, "s_tmax": 50.0, "s_noise": 1.003}, "epsilon", None),
        ("dpm_2_ancestral", {"num_inference_steps": 10}, "epsilon", None),
        ("dpm_2_ancestral", {"num_inference_steps": 8, "use_karras_sigmas": True, "eta": 0.7, "s_noise": 1.01}, "velocity", None),
        ("dpm_2_ancestral", {"num_inference_steps": 6, "timestep_spacing": "trailing"}, "sample", {"mode": "clip", "range": 3.0}),
        ("dpm_2_ancestral", {"num_inference_steps": 6, "eta": 0.0}, "epsilon", None),
        ("dpmpp_2s_ancestral", {"num_inference_steps": 10}, "epsilon", None),
        ("dpmpp_2s_ancestral", {"num_inference_steps": 8, "use_karras_sigmas": True, "eta": 0.5, "s_noise": 0.98}, "velocity", None),
        ("dpmpp_2s_ancestral", {"num_inference_steps": 6, "timestep_spacing": "trailing"}, "sample", {"mode": "clip", "range": 3.0}),
        ("dpmpp_2s_ancestral", {"num_inference_steps": 6, "eta": 0.0}, "epsilon", None),
        ("dpmpp_2s_ancestral", {"num_inference_steps": 6, "eta": 20.0}, "epsilon", None),
        ("euler_ancestral", {"num_inference_steps": 10}, "epsilon", None),
        ("euler_ancestral", {"num_inference_steps": 10, "eta": 0.5, "s_noise": 1.02}, "epsilon", None),
        ("euler_ancestral", {"num_inference_steps": 8, "use_karras_sigmas": True, "eta": 0.0}, "velocity", None),
        ("euler_ancestral", {"num_inference_steps": 6, "timestep_spacing": "trailing", "eta": 20.0}, "sample", {"mode": "clip", "range": 3.0}),
    ]
    for name, opts, kind, clipping in configs:
        c = run(ks, name, ab, dict(opts), kind, clipping, x_T, draws)
        c.update({"sampler": name, "options": opts, "kind": kind})
        if clipping is not None:
            c["options"] = dict(opts, clipping=clipping)
        cases.append(c)
    # diffusers' interleaved timesteps (rounded: ddpm calls the model at integer timesteps)
    layouts = []
    for cls, name in [(Heun, "heun"), (KDPM2, "dpm_2")]:
        for N, spacing, karras in [(10, "linspace", False), (7, "trailing", False), (8, "linspace", True)]:
            s = cls(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                    timestep_spacing=spacing, use_karras_sigmas=karras)
            s.set_timesteps(N)
            layouts.append({"sampler": name, "options": {"num_inference_steps": N, "timestep_spacing": spacing,
                                                         "use_karras_sigmas": karras},
                            "timesteps": [int(round(float(t))) for t in s.timesteps]})
    payload = {"schedule": ref.LINEAR, "mixture": ref.MIXTURE, "shape": [B, 2], "x_T": ref.flat(x_T),
               "noises": ref.flat(draws), "cases": cases, "diffusers_timesteps": layouts}
    with open(OUT, "w") as f:
        json.dump(payload, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", OUT, len(cases), "cases")


if __name__ == "__main__":
    main()
