#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The ddpm authors
"""Reference trajectories for ddpm's PNDMSampler and for DDIMSampler's diffusers previous-timestep mode,
written to tests/data/samplers/pndm.json.

The trajectories come from diffusers' own PNDMScheduler and DDIMScheduler, imported from a checkout given
by path (nothing of it is copied here), driven in float64:
  - the schedulers' alphas_cumprod (and final_alpha_cumprod) are replaced by the float64 values of the
    schedule recipe (diffusers builds them in float32; ddpm in double), so that the comparison sees the
    algorithms, not float32 rounding of the schedule;
  - the model is the exact E[eps | x_t] of the Gaussian mixture of make_sampler_fixtures.py (the one of
    tests/samplers/sampler_support.hpp), given as the prediction of the case's kind (epsilon, or
    v = sqrt(ab) eps - sqrt(1 - ab) x0) at alpha_bar of the training timestep the pipeline passes;
  - the loop is diffusers' pipeline loop: for t in scheduler.timesteps: out = model(x, t);
    x = scheduler.step(out, t, x).prev_sample (DDIM: with eta and, for eta > 0, variance_noise from a
    stored list, one draw per step).
Each case stores the scheduler's timesteps (the model calls), x after every step, and the final x.

Run:  /usr/bin/python3 tests/reference/make_pndm_fixtures.py /work/ext/diffusers
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
import make_sampler_fixtures as ref  # noqa: E402  (schedules and the mixture model)

OUT = os.path.join(HERE, "..", "data", "samplers", "pndm.json")
SEED = 20261208


def import_schedulers(path):
    # As make_ksampler_fixtures.py: diffusers' import chain with Debian's packages (stubs for what is
    # missing), the schedulers package created bare so that only the two scheduler modules are imported.
    from make_unet_grad_fixture import import_diffusers_unet
    import_diffusers_unet(path)
    m = types.ModuleType("diffusers.schedulers")
    m.__path__, m.__package__ = [os.path.join(path, "src", "diffusers", "schedulers")], "diffusers.schedulers"
    sys.modules["diffusers.schedulers"] = m
    pndm = importlib.import_module("diffusers.schedulers.scheduling_pndm")
    ddim = importlib.import_module("diffusers.schedulers.scheduling_ddim")
    return pndm.PNDMScheduler, ddim.DDIMScheduler


def config_of(recipe):
    if recipe["kind"] == "linear":
        return {"beta_schedule": "linear", "beta_start": recipe["beta_start"], "beta_end": recipe["beta_end"]}
    if recipe["kind"] == "scaled_linear":
        return {"beta_schedule": "scaled_linear", "beta_start": recipe["beta_start"], "beta_end": recipe["beta_end"]}
    raise ValueError(recipe["kind"])


def model_output(mix, ab_all, x, t, kind):
    ab = ab_all[t]
    eps = mix.eps_at(x, ab)
    if kind == "epsilon":
        return eps
    x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
    return math.sqrt(ab) * eps - math.sqrt(1 - ab) * x0


def run(cls, recipe, opts, kind, x_T, draws, eta=0.0):
    T = recipe["T"]
    ab = ref.alphas_cumprod(recipe)
    config = dict(config_of(recipe), num_train_timesteps=T,
                  prediction_type="v_prediction" if kind == "velocity" else "epsilon",
                  timestep_spacing=opts.get("timestep_spacing", "leading"), steps_offset=opts.get("steps_offset", 0),
                  set_alpha_to_one=opts.get("set_alpha_to_one", cls.__name__ == "DDIMScheduler"))
    if cls.__name__ == "PNDMScheduler":
        config["skip_prk_steps"] = opts.get("skip_prk_steps", False)
    else:
        config["clip_sample"] = False
    s = cls(**config)
    s.alphas_cumprod = torch.tensor(ab, dtype=torch.float64)
    s.final_alpha_cumprod = torch.tensor(1.0 if config["set_alpha_to_one"] else ab[0], dtype=torch.float64)
    s.set_timesteps(opts["num_inference_steps"])
    mix = ref.Mixture(ab, **ref.MIXTURE)
    x = torch.from_numpy(x_T.copy())
    xs, ts = [], []
    for k, t in enumerate(s.timesteps):
        t = int(t)
        ts.append(t)
        assert 0 <= t < T, t
        out = torch.from_numpy(model_output(mix, ab, x.numpy(), t, kind))
        if cls.__name__ == "DDIMScheduler":
            extra = {"eta": eta}
            if eta > 0:
                extra["variance_noise"] = torch.from_numpy(draws[k].copy())
            x = s.step(out, t, x, **extra).prev_sample
        else:
            x = s.step(out, t, x).prev_sample
        xs.append(ref.flat(x.numpy()))
    return {"timesteps": ts, "xs": xs, "x": xs[-1]}


def main():
    PNDM, DDIM = import_schedulers(sys.argv[1])
    rng = np.random.default_rng(SEED)
    B = 4
    x_T = rng.standard_normal((B, 2))
    draws = rng.standard_normal((16, B, 2))
    sd = {"kind": "scaled_linear", "T": 1000, "beta_start": 0.00085, "beta_end": 0.012}
    cases = []
    pndm_configs = [
        # Stable Diffusion 1.x: scaled_linear, leading, steps_offset 1, skip_prk_steps, set_alpha_to_one false
        (sd, {"num_inference_steps": 10, "skip_prk_steps": True, "steps_offset": 1}, "epsilon"),
        (sd, {"num_inference_steps": 7, "skip_prk_steps": True, "steps_offset": 1, "set_alpha_to_one": True}, "velocity"),
        (ref.LINEAR, {"num_inference_steps": 10, "skip_prk_steps": True, "timestep_spacing": "trailing"}, "epsilon"),
        (ref.LINEAR, {"num_inference_steps": 7, "skip_prk_steps": True, "timestep_spacing": "linspace"}, "velocity"),
        (ref.LINEAR, {"num_inference_steps": 2, "skip_prk_steps": True}, "epsilon"),
        (ref.LINEAR, {"num_inference_steps": 1, "skip_prk_steps": True}, "epsilon"),
        # F-PNDM: the Runge-Kutta warm-up (even and odd T / N, and T / N / 2 rounded down)
        (ref.LINEAR, {"num_inference_steps": 10}, "epsilon"),
        (sd, {"num_inference_steps": 8, "steps_offset": 1}, "velocity"),
        (ref.LINEAR, {"num_inference_steps": 6, "timestep_spacing": "trailing", "set_alpha_to_one": True}, "epsilon"),
        (ref.LINEAR, {"num_inference_steps": 5, "timestep_spacing": "linspace"}, "velocity"),
        (ref.LINEAR, {"num_inference_steps": 4}, "epsilon"),
    ]
    for recipe, opts, kind in pndm_configs:
        c = run(PNDM, recipe, opts, kind, x_T, draws)
        c.update({"sampler": "pndm", "schedule": recipe, "options": opts, "kind": kind})
        cases.append(c)
    ddim_configs = [
        (ref.LINEAR, {"num_inference_steps": 7, "timestep_spacing": "trailing"}, "epsilon", 0.0),
        (ref.LINEAR, {"num_inference_steps": 7, "timestep_spacing": "linspace"}, "velocity", 0.0),
        (ref.LINEAR, {"num_inference_steps": 6, "timestep_spacing": "trailing", "set_alpha_to_one": False}, "epsilon", 1.0),
        (sd, {"num_inference_steps": 10, "steps_offset": 1}, "epsilon", 0.5),
        (ref.LINEAR, {"num_inference_steps": 8, "timestep_spacing": "linspace"}, "epsilon", 0.0),
    ]
    for recipe, opts, kind, eta in ddim_configs:
        c = run(DDIM, recipe, opts, kind, x_T, draws, eta)
        c.update({"sampler": "ddim", "schedule": recipe, "options": dict(opts, eta=eta), "kind": kind})
        cases.append(c)
    payload = {"mixture": ref.MIXTURE, "shape": [B, 2], "x_T": ref.flat(x_T), "noises": ref.flat(draws),
               "cases": cases}
    with open(OUT, "w") as f:
        json.dump(payload, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", OUT, len(cases), "cases,", os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
