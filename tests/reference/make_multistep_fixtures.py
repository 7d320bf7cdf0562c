#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The ddpm authors
"""Reference trajectories for ddpm's multistep DPM-Solver family, written to tests/data/samplers/multistep.json:
DPMSolverMultistepSampler's new options (solver_order 3, algorithm_type dpmsolver, sde-dpmsolver++,
sde-dpmsolver, euler_at_final) and the k-diffusion samplers DPMPP2MSDESampler / DPMPP3MSDESampler.

Two kinds of cases, each made by the upstream code itself, imported from checkouts given by path (nothing of
either is copied here):

  - "diffusers": diffusers' own DPMSolverMultistepScheduler.step, in float64. The scheduler module casts to
    float32 in three places (its betas, the sigmas of set_timesteps, the sample inside step); here the module's
    `torch` and `np` names are wrapped so that float32 means float64 there, and the schedule's alphas_cumprod
    are those of make_sampler_fixtures (float64, as ddpm's NoiseSchedule), zero-terminal-SNR's last value 2^-24
    as diffusers sets it. set_timesteps(N) then makes the timesteps and sigmas. The loop is a pipeline's:
    out = model(x, t), x = step(out, t, x, variance_noise=z).prev_sample, from x_T (init_noise_sigma = 1). The
    model is make_ksampler_fixtures' mixture prediction of the case's kind at alpha_bar[t] (2^-24 for a zero
    alpha_bar, so that every kind is defined there; the C++ test evaluates it so too), called at ddpm's
    timestep: the nearest training timestep of each sigma (diffusers truncates the fractional timesteps of
    exponential sigmas to int64; ddpm rounds, docs/samplers.md); each call's timestep is recorded. The SDE
    types' variance_noise is the next stored N(0, 1) draw at every step that adds noise, zeros at a last
    step to sigma 0 (whose noise weight is 0; ddpm draws nothing there). The step sees x as (B, 2, 1), since
    _threshold_sample needs a dimension after the channels; the threshold is per batch element either way.
  - "k-diffusion": k-diffusion's sample_dpmpp_2m_sde / sample_dpmpp_3m_sde on x_ve = x / sqrt(alpha_bar),
    exactly as make_ksampler_fixtures.run drives the other k-diffusion samplers (its Denoiser and stored
    noise; the noise_sampler returns the stored draws in call order instead of a Brownian tree's), over
    EulerSampler's grid (make_sampler_fixtures.euler_grid; exponential sigmas between its ends), or over
    DPMSolverMultistepSampler's grid for the cases that check its sde_dpmsolver_pp third order against
    sample_dpmpp_3m_sde.
No case combines a Karras or exponential ramp with final sigma_min: both ramps end at sigma[0], which is then
also the final sigma, and the last step has h = 0 (diffusers divides by it).

Run:  /usr/bin/python3 tests/reference/make_multistep_fixtures.py /work/ext/k-diffusion /work/ext/diffusers
"""

import importlib
import json
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_sampler_fixtures as ref  # noqa: E402
import make_ksampler_fixtures as kref  # noqa: E402

OUT = os.path.join(HERE, "..", "data", "samplers", "multistep.json")
SEED = 20261208
SCHEDULES = {"linear": ref.LINEAR, "zero_snr": ref.ZERO_SNR}


class Float64As32:
    """A module seen with its float32 attribute replaced by float64."""

    def __init__(self, module, f64):
        self._module, self._f64 = module, f64

    def __getattr__(self, name):
        return self._f64 if name == "float32" else getattr(self._module, name)


def import_dpm_scheduler(path):
    kref.import_diffusers(path)  # stubs, bare packages
    mod = importlib.import_module("diffusers.schedulers.scheduling_dpmsolver_multistep")
    mod.torch = Float64As32(torch, torch.float64)
    mod.np = Float64As32(np, np.float64)
    return mod.DPMSolverMultistepScheduler


def alphas_cumprod(name):
    ab = ref.alphas_cumprod(SCHEDULES[name]).copy()
    ab[ab == 0.0] = 2.0 ** -24  # diffusers' zero-terminal-SNR replacement
    return ab


def exponential_euler_grid(ab, N, spacing):
    ts, sig = ref.euler_grid(ab, N, spacing)
    table = ref.sigma_table(ab)
    sig = np.exp(np.linspace(math.log(sig[0]), math.log(sig[-2]), N))
    ts = [int(np.round(ref.sigma_to_t(s, np.log(table)))) for s in sig]
    return ts, np.concatenate([sig, [0.0]])


def run_diffusers(Sched, case, x_T, draws):
    o = case["options"]
    sched_name = case.get("schedule", "linear")
    ab = alphas_cumprod(sched_name)
    kw = {k: o[k] for k in ["solver_order", "solver_type", "algorithm_type", "lower_order_final", "euler_at_final",
                            "use_karras_sigmas", "use_exponential_sigmas", "timestep_spacing"] if k in o}
    if "final_sigma" in o:
        kw["final_sigmas_type"] = o["final_sigma"]
    clipping = o.get("clipping")
    if clipping is not None:
        assert clipping["mode"] == "dynamic_threshold"
        kw.update(thresholding=True, dynamic_thresholding_ratio=clipping["ratio"], sample_max_value=clipping["max_value"])
    pred = {"epsilon": "epsilon", "sample": "sample", "velocity": "v_prediction"}[case["kind"]]
    s = Sched(num_train_timesteps=len(ab), prediction_type=pred, **kw)
    s.alphas_cumprod = torch.from_numpy(ab)
    s.alpha_t = torch.sqrt(s.alphas_cumprod)
    s.sigma_t = torch.sqrt(1 - s.alphas_cumprod)
    s.lambda_t = torch.log(s.alpha_t) - torch.log(s.sigma_t)
    s.set_timesteps(o["num_inference_steps"])
    s.set_begin_index(0)
    sig = s.sigmas.numpy()
    assert sig.dtype == np.float64
    table = ref.sigma_table(ab)
    ts = [int(np.round(ref.sigma_to_t(v, np.log(table)))) for v in sig[:-1]]
    if not (o.get("use_karras_sigmas") or o.get("use_exponential_sigmas")):
        assert ts == [int(t) for t in s.timesteps], (ts, s.timesteps)
    den = kref.Denoiser(ab, case["kind"], None)
    x = torch.from_numpy(x_T.copy())
    sde = o.get("algorithm_type", "dpmsolver++").startswith("sde")
    used, xs = 0, []
    for i, t in enumerate(ts):
        out = torch.from_numpy(np.ascontiguousarray(den.output(x.numpy(), t)))
        z = None
        if sde:
            if sig[i + 1] > 0:
                z = torch.from_numpy(draws[used].copy())
                used += 1
            else:
                z = torch.zeros_like(x)
        # as (B, 2, 1): _threshold_sample's reshape needs a trailing dimension (np.prod(()) is a float)
        x = s.step(out[..., None], int(s.timesteps[i]), x[..., None],
                   variance_noise=None if z is None else z[..., None]).prev_sample[..., 0]
        assert x.dtype == torch.float64
        xs.append(ref.flat(x.numpy()))
    return {"sigmas": ref.flat(sig), "call_timesteps": ts, "noise_used": used, "xs": xs, "x": xs[-1]}


def run_kdiffusion(ks, case, x_T, draws):
    o = case["options"]
    ab = alphas_cumprod(case.get("schedule", "linear"))
    N = o["num_inference_steps"]
    spacing = o.get("timestep_spacing", "linspace")
    if case.get("grid") == "dpm":
        ts, sig = ref.dpm_grid(ab, N, spacing, o.get("use_karras_sigmas", False))
    elif o.get("sigma_spacing") == "exponential":
        ts, sig = exponential_euler_grid(ab, N, spacing)
    else:
        ts, sig = ref.euler_grid(ab, N, spacing, o.get("use_karras_sigmas", False))
    sig = np.array(sig, dtype=np.float64)
    sig[-1] = 0.0
    den = kref.Denoiser(ab, case["kind"], o.get("clipping"))
    noise = kref.Noise(draws)
    xs = []

    def callback(d):
        s = float(d["sigma"])
        xs.append(ref.flat(d["x"].numpy() / math.sqrt(1 + s * s)))

    extra = {k: o[k] for k in ["eta", "s_noise"] + (["solver_type"] if case["sampler"] == "dpmpp_2m_sde" else [])
             if k in o}
    x = torch.from_numpy(x_T * math.sqrt(1 + sig[0] ** 2))
    out = getattr(ks, "sample_" + case["sampler"])(den, x, torch.tensor(sig), disable=True, callback=callback,
                                                   noise_sampler=lambda a, b: noise.next(), **extra)
    assert [c[1] for c in den.calls] == [int(t) for t in ts], ([c[1] for c in den.calls], ts)
    xs = xs[1:] + [ref.flat(out.numpy())]  # x after each step (the callback sees x before it)
    return {"sigmas": ref.flat(sig), "call_timesteps": [c[1] for c in den.calls], "noise_used": noise.used,
            "xs": xs, "x": xs[-1]}


def main():
    Sched = import_dpm_scheduler(sys.argv[2])
    ks = kref.import_k_diffusion(sys.argv[1])
    rng = np.random.default_rng(SEED)
    B = 4
    x_T = rng.standard_normal((B, 2))
    draws = rng.standard_normal((32, B, 2))
    clip = {"mode": "clip", "range": 3.0}
    thresh = {"mode": "dynamic_threshold", "ratio": 0.9, "max_value": 2.5}
    D = "diffusers"
    K = "k-diffusion"
    configs = [
        # diffusers' DPMSolverMultistepScheduler: third order, the eps form, the SDE types
        (D, "dpmsolver_multistep", {"num_inference_steps": 10, "solver_order": 3}, "epsilon"),
        (D, "dpmsolver_multistep", {"num_inference_steps": 20, "solver_order": 3, "use_karras_sigmas": True,
                                    "solver_type": "heun"}, "velocity"),
        (D, "dpmsolver_multistep", {"num_inference_steps": 16, "solver_order": 3, "use_exponential_sigmas": True,
                                    "final_sigma": "sigma_min", "euler_at_final": True}, "sample"),
        (D, "dpmsolver_multistep", {"num_inference_steps": 8, "solver_order": 3, "lower_order_final": False,
                                    "final_sigma": "sigma_min", "clipping": thresh}, "epsilon"),
        (D, "dpmsolver_multistep", {"num_inference_steps": 7, "solver_order": 3, "timestep_spacing": "trailing",
                                    "algorithm_type": "dpmsolver++"}, "velocity", "zero_snr"),
        (D, "dpmsolver_multistep", {"num_inference_steps": 16, "solver_order": 2, "euler_at_final": True,
                                    "final_sigma": "sigma_min"}, "epsilon"),
        (D, "dpmsolver_multistep", {"num_inference_steps": 10, "algorithm_type": "dpmsolver",
                                    "final_sigma": "sigma_min"}, "epsilon"),
        (D, "dpmsolver_multistep", {"num_inference_steps": 20, "algorithm_type": "dpmsolver", "solver_order": 3,
                                    "final_sigma": "sigma_min"}, "velocity"),
        (D, "dpmsolver_multistep", {"num_inference_steps": 9, "algorithm_type": "dpmsolver", "solver_type": "heun",
                                    "timestep_spacing": "trailing", "final_sigma": "sigma_min",
                                    "clipping": thresh}, "sample"),
        (D, "dpmsolver_multistep", {"num_inference_steps": 10, "algorithm_type": "sde-dpmsolver++"}, "epsilon"),
        (D, "dpmsolver_multistep", {"num_inference_steps": 16, "algorithm_type": "sde-dpmsolver++",
                                    "solver_type": "heun", "use_karras_sigmas": True}, "velocity"),
        (D, "dpmsolver_multistep", {"num_inference_steps": 6, "algorithm_type": "sde-dpmsolver++", "solver_order": 1,
                                    "timestep_spacing": "trailing"}, "sample"),
        (D, "dpmsolver_multistep", {"num_inference_steps": 8, "algorithm_type": "sde-dpmsolver++",
                                    "final_sigma": "sigma_min", "clipping": thresh}, "epsilon"),
        (D, "dpmsolver_multistep", {"num_inference_steps": 7, "algorithm_type": "sde-dpmsolver++",
                                    "timestep_spacing": "trailing"}, "velocity", "zero_snr"),
        (D, "dpmsolver_multistep", {"num_inference_steps": 10, "algorithm_type": "sde-dpmsolver",
                                    "final_sigma": "sigma_min"}, "epsilon"),
        (D, "dpmsolver_multistep", {"num_inference_steps": 8, "algorithm_type": "sde-dpmsolver", "solver_type": "heun",
                                    "timestep_spacing": "trailing", "final_sigma": "sigma_min"}, "velocity"),
        # k-diffusion's samplers
        (K, "dpmpp_2m_sde", {"num_inference_steps": 10}, "epsilon"),
        (K, "dpmpp_2m_sde", {"num_inference_steps": 8, "use_karras_sigmas": True, "solver_type": "heun"}, "velocity"),
        (K, "dpmpp_2m_sde", {"num_inference_steps": 6, "timestep_spacing": "trailing", "eta": 0.5, "s_noise": 1.02,
                             "clipping": clip}, "sample"),
        (K, "dpmpp_2m_sde", {"num_inference_steps": 9, "sigma_spacing": "exponential", "eta": 0.0}, "epsilon"),
        (K, "dpmpp_2m_sde", {"num_inference_steps": 7, "eta": 0.0, "solver_type": "heun"}, "epsilon"),
        (K, "dpmpp_3m_sde", {"num_inference_steps": 10}, "epsilon"),
        (K, "dpmpp_3m_sde", {"num_inference_steps": 8, "use_karras_sigmas": True, "eta": 0.7, "s_noise": 0.99},
         "velocity"),
        (K, "dpmpp_3m_sde", {"num_inference_steps": 6, "timestep_spacing": "trailing", "clipping": clip}, "sample"),
        (K, "dpmpp_3m_sde", {"num_inference_steps": 12, "sigma_spacing": "exponential", "eta": 0.0}, "epsilon"),
        # DPMSolverMultistepSampler's sde_dpmsolver_pp third order against sample_dpmpp_3m_sde (its grid)
        (K, "dpmpp_3m_sde", {"num_inference_steps": 10, "solver_order": 3, "solver_type": "heun",
                             "lower_order_final": False, "algorithm_type": "sde-dpmsolver++"}, "epsilon", "linear",
         "dpm"),
        (K, "dpmpp_3m_sde", {"num_inference_steps": 8, "solver_order": 3, "solver_type": "heun",
                             "lower_order_final": False, "algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
         "velocity", "linear", "dpm"),
    ]
    cases = []
    for cfg in configs:
        source, sampler, opts, kind = cfg[:4]
        case = {"source": source, "sampler": sampler, "options": opts, "kind": kind}
        if len(cfg) > 4:
            case["schedule"] = cfg[4]
        if len(cfg) > 5:
            case["grid"] = cfg[5]
        r = run_diffusers(Sched, case, x_T, draws) if source == D else run_kdiffusion(ks, case, x_T, draws)
        case.update(r)
        cases.append(case)
        print(source, sampler, opts, kind, "draws", r["noise_used"])
    payload = {"schedules": SCHEDULES, "mixture": ref.MIXTURE, "shape": [B, 2], "x_T": ref.flat(x_T),
               "noises": ref.flat(draws), "cases": cases}
    with open(OUT, "w") as f:
        json.dump(payload, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", OUT, len(cases), "cases", os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
