#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The ddpm authors
"""Reference trajectories for ddpm's UniPCSampler, written to tests/data/samplers/unipc.json.

The trajectories come from diffusers' own UniPCMultistepScheduler, imported from a checkout given by path
(nothing of it is copied here), driven step by step (set_timesteps, then step() once per timestep, as a
pipeline does) by the exact E[eps | x_t] of the Gaussian mixture of tests/samplers/sampler_support.hpp (the
Mixture class of make_sampler_fixtures.py), given as the case's prediction kind at alpha_bar[t] of the
training timestep t the model is called with.

  - float64 throughout: the scheduler's alphas_cumprod are replaced by the float64 ones of the case's
    schedule recipe (make_sampler_fixtures.alphas_cumprod; zero terminal SNR with alpha_bar[T-1] = 2^-24 as
    diffusers sets it), and the scheduler module's NumPy is seen through a proxy whose float32 is float64,
    so that set_timesteps' final cast of the sigmas to float32 keeps float64 instead (every other line of
    the scheduler runs as it is). The float32 sigmas of an unmodified scheduler are checked to be these
    sigmas rounded to float32 (the only difference), and the coefficient arithmetic then runs in float64
    torch. ddpm computes its coefficients in double likewise (docs/samplers.md).
  - The model is called at the nearest training timestep of each sigma, round(sigma_to_t(sigma)) (ddpm's
    rule, (S6)); diffusers' own timesteps equal these for spaced timesteps and Karras sigmas (checked), while
    for use_exponential_sigmas diffusers truncates sigma_to_t instead of rounding; such a case records
    diffusers' timesteps beside the ones used ("diffusers_timesteps").
  - x after every step is recorded ("xs"; the last is the result).
  - Where diffusers' last step is not finite (a final sigma of 0: bh1's B(h) = -inf times a zero sum, the
    noise-prediction form's sigma_t (e^h - 1) = 0 x inf, and with lower_order_final=False a predictor of
    order >= 2 dividing by r_k = 0; a zero-length last step, sigma_min after a Karras ramp, at order 3), the
    last entry of "xs" is the limit ddpm takes instead (docs/samplers.md), computed from diffusers' own state
    after that step: x0 form, m_i (model_outputs[-1]); noise form, x_c / alpha_i - sigma_i m_i with x_c =
    last_sample; zero-length step, x_c. The case is marked "last_step". Every earlier step is diffusers'.
  - Float tolerance: each case is also run from x_T rounded to float32 and the largest change of x after any
    step, over the rounding's size, is printed (the ODE's amplification of a perturbation of x: <= 2.0 here),
    and diffusers' scheduler is run unmodified in float32 (its float32 sigmas and coefficients, x and the
    model outputs rounded to float32): its largest deviation from the float64 run is stored per case as
    "float32_deviation". It is 1e-7..1e-6 in the data-prediction form and up to 6.6e-4 in the
    noise-prediction form, whose update sums terms that grow as e^h (and, under zero terminal SNR, as
    alpha_{i+1} / alpha_0 = 4096 alpha_{i+1}) into an O(1) result. The C++ float test allows
    max(3.5e-5, 2 x float32_deviation).

Run:  /usr/bin/python3 tests/reference/make_unipc_fixtures.py /work/ext/diffusers
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
import make_sampler_fixtures as ref  # noqa: E402  (schedules, mixture, sigma_to_t: shared with the other fixtures)

OUT = os.path.join(HERE, "..", "data", "samplers", "unipc.json")
SEED = 20261208


def import_unipc(path):
    # Debian lacks huggingface_hub and more: make_unet_grad_fixture's importer stubs them and creates the
    # diffusers packages bare; the schedulers package is created bare too, so that only the UniPC module
    # (and what it imports) is loaded.
    from make_unet_grad_fixture import import_diffusers_unet
    import_diffusers_unet(path)
    m = types.ModuleType("diffusers.schedulers")
    m.__path__, m.__package__ = [os.path.join(path, "src", "diffusers", "schedulers")], "diffusers.schedulers"
    sys.modules["diffusers.schedulers"] = m
    return importlib.import_module("diffusers.schedulers.scheduling_unipc_multistep")


def float64_numpy():
    """NumPy as the scheduler module sees it, with float32 meaning float64."""
    proxy = types.ModuleType("numpy_float64")
    proxy.__dict__.update({k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    proxy.float32 = np.float64
    return proxy


def make_scheduler(module, recipe, opts):
    kwargs = dict(num_train_timesteps=recipe.get("T", 1000), beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    for key in ["solver_order", "solver_type", "predict_x0", "lower_order_final", "disable_corrector",
                "use_karras_sigmas", "use_exponential_sigmas", "timestep_spacing", "steps_offset",
                "final_sigmas_type", "thresholding", "dynamic_thresholding_ratio", "sample_max_value"]:
        if key in opts:
            kwargs[key] = opts[key]
    kwargs["prediction_type"] = {"epsilon": "epsilon", "sample": "sample", "velocity": "v_prediction"}[opts["kind"]]
    s = module.UniPCMultistepScheduler(**kwargs)
    ab = ref.alphas_cumprod(recipe)
    ab[ab == 0.0] = 2.0 ** -24  # rescale_betas_zero_snr: diffusers' own replacement
    s.alphas_cumprod = torch.from_numpy(ab.copy())
    return s, ab


def model_output(mix, kind, x, ab):
    eps = mix.eps_at(x, ab)
    if kind == "epsilon":
        return eps
    x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
    if kind == "sample":
        return x0
    return math.sqrt(ab) * eps - math.sqrt(1 - ab) * x0


def run(module, recipe, opts, x_T):
    """One trajectory with diffusers' scheduler in float64; returns (timesteps used, diffusers' timesteps,
    sigmas, x after each step)."""
    original_np = module.np
    module.np = float64_numpy()
    try:
        s, ab = make_scheduler(module, recipe, opts)
        s.set_timesteps(opts["num_inference_steps"])
    finally:
        module.np = original_np
    sig = s.sigmas.numpy().astype(np.float64)
    assert s.sigmas.dtype == torch.float64
    # an unmodified scheduler's sigmas are these rounded to float32
    s32, _ = make_scheduler(module, recipe, opts)
    s32.set_timesteps(opts["num_inference_steps"])
    assert np.array_equal(s32.sigmas.numpy(), sig.astype(np.float32)), "float32 sigmas differ beyond the cast"
    table = ref.sigma_table(ab)
    log_table = np.log(table)
    theirs = [int(t) for t in s.timesteps]
    ours = [int(np.round(ref.sigma_to_t(float(v), log_table))) for v in sig[:-1]]
    if not opts.get("use_exponential_sigmas", False):
        assert ours == theirs, (ours, theirs)
    mix = ref.Mixture(ab, **ref.MIXTURE)
    # (B, 1, D): diffusers' thresholding wants channel and spatial dimensions (its reshape fails on a 2-D
    # sample); per sample the values are the same D numbers.
    x = torch.from_numpy(x_T.reshape(x_T.shape[0], 1, -1).copy())
    xs = []
    limit = False
    for i, t in enumerate(s.timesteps):
        out = model_output(mix, opts["kind"], x.numpy(), ab[ours[i]])
        x = s.step(torch.from_numpy(out), t, x).prev_sample
        assert x.dtype == torch.float64
        if not np.isfinite(x.numpy()).all():
            # Only the last step may fail (checked by the caller): the limit ddpm documents, from diffusers'
            # own state after that step (last_sample = x_c, the corrected sample; model_outputs[-1] = m_i).
            assert i == len(s.timesteps) - 1, (opts, i)
            x_c, m = s.last_sample.numpy(), s.model_outputs[-1].numpy()
            s0, s1 = sig[i], sig[i + 1]
            if s1 == 0.0:
                x = torch.from_numpy(m.copy() if s.predict_x0 else x_c * math.sqrt(1 + s0 * s0) - s0 * m)
            else:
                assert s1 == s0, (opts, s0, s1)
                x = torch.from_numpy(x_c.copy())
            limit = True
        xs.append(x.numpy().reshape(x_T.shape).copy())
    return ours, theirs, sig, xs, limit


def float32_deviation(module, recipe, opts, x_T, ours, xs):
    """The largest deviation, relative to max(|x|, 1), of diffusers' own float32 run (its float32 sigmas and
    coefficients, x and the model outputs rounded to float32) from the float64 one, over the steps where the
    latter is diffusers' (not a limit)."""
    s, ab = make_scheduler(module, recipe, opts)
    s.set_timesteps(opts["num_inference_steps"])
    mix = ref.Mixture(ab, **ref.MIXTURE)
    x = torch.from_numpy(x_T.reshape(x_T.shape[0], 1, -1).astype(np.float32))
    worst = 0.0
    for i, t in enumerate(s.timesteps):
        out = model_output(mix, opts["kind"], x.numpy().astype(np.float64), ab[ours[i]])
        x = s.step(torch.from_numpy(out.astype(np.float32)), t, x).prev_sample
        got = x.numpy().reshape(x_T.shape).astype(np.float64)
        if np.isfinite(got).all():
            worst = max(worst, float(np.max(np.abs(got - xs[i]) / np.maximum(np.abs(xs[i]), 1.0))))
    return worst


def main():
    module = import_unipc(sys.argv[1])
    rng = np.random.default_rng(SEED)
    B = 4
    x_T = rng.standard_normal((B, 2))
    L, Z = ref.LINEAR, ref.ZERO_SNR
    configs = [
        (L, {"num_inference_steps": 10, "kind": "epsilon"}),  # diffusers' defaults: bh2, order 2, corrector
        (L, {"num_inference_steps": 8, "kind": "epsilon", "solver_type": "bh1"}),
        (L, {"num_inference_steps": 10, "kind": "epsilon", "solver_order": 3}),
        (L, {"num_inference_steps": 8, "kind": "velocity", "solver_order": 3, "solver_type": "bh1",
             "use_karras_sigmas": True}),
        (L, {"num_inference_steps": 9, "kind": "epsilon", "use_karras_sigmas": True}),
        (L, {"num_inference_steps": 10, "kind": "epsilon", "predict_x0": False}),
        (L, {"num_inference_steps": 7, "kind": "sample", "predict_x0": False, "solver_order": 3,
             "solver_type": "bh1", "timestep_spacing": "trailing"}),
        (L, {"num_inference_steps": 6, "kind": "velocity", "predict_x0": False, "use_karras_sigmas": True}),
        (L, {"num_inference_steps": 7, "kind": "sample", "timestep_spacing": "trailing", "thresholding": True,
             "dynamic_thresholding_ratio": 0.9, "sample_max_value": 3.0}),
        (L, {"num_inference_steps": 6, "kind": "velocity", "lower_order_final": False,
             "final_sigmas_type": "sigma_min"}),
        (L, {"num_inference_steps": 9, "kind": "epsilon", "disable_corrector": [0, 2], "timestep_spacing": "leading",
             "steps_offset": 1}),
        (L, {"num_inference_steps": 8, "kind": "epsilon", "solver_order": 3, "use_exponential_sigmas": True}),
        (L, {"num_inference_steps": 6, "kind": "epsilon", "solver_order": 1}),
        (L, {"num_inference_steps": 8, "kind": "sample", "solver_order": 3, "lower_order_final": False,
             "final_sigmas_type": "sigma_min", "use_karras_sigmas": True}),
        (Z, {"num_inference_steps": 6, "kind": "velocity", "timestep_spacing": "trailing"}),
        (Z, {"num_inference_steps": 8, "kind": "velocity", "predict_x0": False, "solver_type": "bh1",
             "timestep_spacing": "trailing"}),
    ]
    cases = []
    x_T32 = x_T.astype(np.float32).astype(np.float64)
    rounding = np.max(np.abs(x_T32 - x_T) / np.maximum(np.abs(x_T), 1.0))
    for recipe, opts in configs:
        ours, theirs, sig, xs, limit = run(module, recipe, opts, x_T)
        _, _, _, xs32, _ = run(module, recipe, opts, x_T32)
        moved = max(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1.0)) for a, b in zip(xs32, xs))
        dev = float32_deviation(module, recipe, opts, x_T, ours, xs)
        print(f"{json.dumps(opts)}: x moved by up to {moved:.2e} for an x_T rounding of {rounding:.2e} "
              f"(amplification {moved / rounding:.1f}); diffusers' float32 run deviates by up to {dev:.2e}")
        c = {"schedule": recipe, "options": opts, "timesteps": ours, "sigmas": ref.flat(sig),
             "xs": [ref.flat(v) for v in xs], "float32_deviation": float(f"{dev:.3g}")}
        if ours != theirs:
            c["diffusers_timesteps"] = theirs
        if limit:
            c["last_step"] = "diffusers: not finite; here the limit"
        cases.append(c)
    # diffusers' lower_order_final=False with a final sigma of 0: not finite at the last step
    _, _, _, _, limit = run(module, L, {"num_inference_steps": 6, "kind": "epsilon", "lower_order_final": False}, x_T)
    print("lower_order_final=False, final sigma 0, order 2: last step not finite:", limit)
    assert limit
    payload = {"mixture": ref.MIXTURE, "shape": [B, 2], "x_T": ref.flat(x_T), "cases": cases}
    with open(OUT, "w") as f:
        json.dump(payload, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", OUT, len(cases), "cases,", os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
