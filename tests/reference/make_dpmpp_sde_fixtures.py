#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The ddpm authors
"""Reference trajectories for ddpm's DPM++ SDE sampler, written to tests/data/samplers/dpmpp_sde.json.

Two references, each imported from a checkout given by path (nothing of them is copied here):
  - k-diffusion's sample_dpmpp_sde, driven as make_ksampler_fixtures.py drives the k-diffusion family (its
    Denoiser: the Gaussian mixture of tests/samplers/sampler_support.hpp seen through ddpm's conversion, at
    the nearest training timestep of each sigma; x_ve = sqrt(1 + sigma_0^2) x_T at the start), with
    noise_sampler replaced by a function returning the stored N(0, 1) draws in call order and recording the
    (sigma, sigma_next) it was called with. torchsde is not installed and is not needed: the Brownian tree is
    exactly what the stored draws replace.
  - diffusers' DPMSolverSDEScheduler (set_timesteps, scale_model_input, step), its noise_sampler attribute
    replaced by the same replay after set_timesteps. Two changes make it comparable at 1e-10 in float64,
    both to its number types only: the scheduler's alphas_cumprod is replaced by ddpm's float64 one (diffusers
    makes the betas in float32) and the module's np.float32, with which set_timesteps rounds its sigmas, is
    float64 while it runs. The model is called with the rounded timesteps (ddpm calls integer timesteps);
    the C++ test checks that ddpm's timesteps() equal them.
Every case records the model calls' (sigma, t), the noise calls' levels, x (variance preserving) at the
start of each interval and the final x.

Run:  /usr/bin/python3 tests/reference/make_dpmpp_sde_fixtures.py /work/ext/k-diffusion /work/ext/diffusers
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
import make_sampler_fixtures as ref  # noqa: E402
import make_ksampler_fixtures as ksf  # noqa: E402

OUT = os.path.join(HERE, "..", "data", "samplers", "dpmpp_sde.json")
SEED = 20261208


class Replay:
    """noise_sampler(sigma, sigma_next): the stored draws in call order; records the levels."""

    def __init__(self, draws):
        self.draws, self.calls = draws, []

    def __call__(self, sigma, sigma_next):
        self.calls.append([float(sigma), float(sigma_next)])
        return torch.from_numpy(self.draws[len(self.calls) - 1].copy())


def grid(ab, opts):
    ts, sig = ref.euler_grid(ab, opts["num_inference_steps"], opts.get("timestep_spacing", "linspace"),
                             opts.get("use_karras_sigmas", False), opts.get("final_sigma", "zero"))
    return ts, sig


def run_k(ks, ab, opts, kind, clipping, x_T, draws):
    ts, sig = grid(ab, opts)
    den = ksf.Denoiser(ab, kind, clipping)
    noise = Replay(draws)
    checkpoints = []

    def callback(d):
        s = float(d["sigma"])
        checkpoints.append({"call": len(den.calls) - 1, "x": ref.flat(d["x"].numpy() / math.sqrt(1 + s * s))})

    extra = {k: opts[k] for k in ["eta", "s_noise", "r"] if k in opts}
    x = torch.from_numpy(x_T * math.sqrt(1 + sig[0] ** 2))
    out = ks.sample_dpmpp_sde(den, x, torch.tensor(sig, dtype=torch.float64), disable=True, callback=callback,
                              noise_sampler=noise, **extra)
    last = sig[-1]
    return {"sigmas": ref.flat(sig), "call_sigmas": [c[0] for c in den.calls],
            "call_timesteps": [c[1] for c in den.calls], "noise_calls": noise.calls, "checkpoints": checkpoints,
            "x": ref.flat(out.numpy() / math.sqrt(1 + last * last))}


def import_dpmsolver_sde(path):
    # the same importer as make_ksampler_fixtures (bare diffusers packages), then the one scheduler module
    ksf.import_diffusers(path)
    if "torchsde" not in sys.modules:
        try:
            importlib.import_module("torchsde")
        except ImportError:
            sys.modules["torchsde"] = types.ModuleType("torchsde")  # its Brownian tree is replaced by the replay
    return importlib.import_module("diffusers.schedulers.scheduling_dpmsolver_sde")


class Float64Numpy(types.ModuleType):
    """numpy with float32 meaning float64 (set_timesteps' `astype(np.float32)`)."""

    def __init__(self):
        super().__init__("numpy_float64")
        self.float32 = np.float64

    def __getattr__(self, name):
        return getattr(np, name)


def run_diffusers(mod, ab, opts, kind, x_T, draws):
    prediction = {"epsilon": "epsilon", "velocity": "v_prediction"}[kind]
    s = mod.DPMSolverSDEScheduler(num_train_timesteps=len(ab), beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                                  prediction_type=prediction, use_karras_sigmas=opts.get("use_karras_sigmas", False),
                                  timestep_spacing=opts.get("timestep_spacing", "linspace"))
    s.alphas_cumprod = torch.tensor(ab, dtype=torch.float64)
    saved = mod.np
    mod.np = Float64Numpy()
    try:
        s.set_timesteps(opts["num_inference_steps"])
    finally:
        mod.np = saved
    assert s.sigmas.dtype == torch.float64
    s.set_begin_index(0)
    noise = Replay(draws)
    s.noise_sampler = noise
    den = ksf.Denoiser(ab, kind, None)
    sig0 = float(s.sigmas[0])
    x = torch.from_numpy(x_T * math.sqrt(1 + sig0 * sig0))
    calls, checkpoints = [], []
    for i, t in enumerate(s.timesteps):
        first = s.state_in_first_order
        sigma = float(s.sigmas[i])  # the step index is i (set_begin_index(0))
        if first:
            checkpoints.append({"call": i, "x": ref.flat(x.numpy() / math.sqrt(1 + sigma * sigma))})
        xin = s.scale_model_input(x, t)
        tt = int(np.round(float(t)))
        calls.append(tt)
        out = torch.from_numpy(np.ascontiguousarray(den.output(xin.numpy(), tt)))
        x = s.step(out, t, x, s_noise=opts.get("s_noise", 1.0)).prev_sample
    return {"call_timesteps": calls, "noise_calls": noise.calls, "checkpoints": checkpoints, "x": ref.flat(x.numpy())}


def main():
    mod = import_dpmsolver_sde(sys.argv[2])  # first: its importer's stubs serve k-diffusion's imports too
    ks = ksf.import_k_diffusion(sys.argv[1])
    rng = np.random.default_rng(SEED)
    ab = ref.alphas_cumprod(ref.LINEAR)
    B = 4
    x_T = rng.standard_normal((B, 2))
    draws = rng.standard_normal((32, B, 2))
    cases = []
    k_configs = [
        ({"num_inference_steps": 8}, "epsilon", None),
        ({"num_inference_steps": 6, "use_karras_sigmas": True}, "velocity", None),
        ({"num_inference_steps": 5, "timestep_spacing": "trailing", "eta": 0.6, "s_noise": 1.02}, "sample",
         {"mode": "clip", "range": 3.0}),
        ({"num_inference_steps": 5, "r": 1.0 / 3.0}, "epsilon", None),
        ({"num_inference_steps": 5, "eta": 0.0}, "epsilon", None),
        ({"num_inference_steps": 4, "eta": 20.0}, "epsilon", None),
        ({"num_inference_steps": 4, "timestep_spacing": "trailing", "final_sigma": "sigma_min"}, "epsilon", None),
    ]
    for opts, kind, clipping in k_configs:
        c = run_k(ks, ab, dict(opts), kind, clipping, x_T, draws)
        c.update({"source": "k-diffusion", "options": opts if clipping is None else dict(opts, clipping=clipping),
                  "kind": kind})
        cases.append(c)
    d_configs = [
        ({"num_inference_steps": 10}, "epsilon"),  # linspace: integer timesteps when 999 / (N - 1) is one
        ({"num_inference_steps": 5, "use_karras_sigmas": True}, "velocity"),
        ({"num_inference_steps": 5, "timestep_spacing": "trailing", "s_noise": 1.01}, "epsilon"),
    ]
    for opts, kind in d_configs:
        c = run_diffusers(mod, ab, dict(opts), kind, x_T, draws)
        c.update({"source": "diffusers", "options": opts, "kind": kind})
        cases.append(c)
    payload = {"schedule": ref.LINEAR, "mixture": ref.MIXTURE, "shape": [B, 2], "x_T": ref.flat(x_T),
               "noises": ref.flat(draws), "cases": cases}
    with open(OUT, "w") as f:
        json.dump(payload, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", OUT, len(cases), "cases")


if __name__ == "__main__":
    main()
