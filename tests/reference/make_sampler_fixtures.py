#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The ddpm authors
"""Reference values for ddpm's samplers, written to tests/data/samplers/*.json.

An independent float64 NumPy implementation of the inference timestep spacings and of the sampler steps,
written from the published semantics of diffusers (DDPMScheduler, DDIMScheduler,
DPMSolverMultistepScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler) and
improved-diffusion (p_sample, ddim_sample over a respaced process), not from the C++ code. Where those
references are wrong, this script follows the corrected semantics that docs/samplers.md documents:
  - trailing spacing always has exactly N timesteps (NumPy's arange adds a spurious -1 for some N);
  - DDIM steps to the next entry of the timestep list, not to t - T // N (diffusers issue 12633);
  - every sampler accepts every prediction kind, and a 2C-channel (learned-variance) output is cut to its
    first C channels where the variance is not used (diffusers issue 3280);
  - DPM-Solver++ and Euler keep their sigmas in float64 (diffusers casts them to float32), call the model
    at integer timesteps (Euler rounds its linspace timesteps; diffusers passes fractional ones) and work on
    the variance-preserving x_t (diffusers' Euler works on x_t / sqrt(alpha_bar) and starts from
    sigma_max * noise).
Every such case agrees with the reference implementation wherever the reference is right; docs/samplers.md
(section 8, "Parity and tests") records how this was confirmed by running the references themselves
outside the repository.

Run with Debian's interpreter (it has NumPy):   /usr/bin/python3 tests/reference/make_sampler_fixtures.py
The output is deterministic: fixed seeds, every number printed as the repr of a float64.
"""

import json
import math
import os

import numpy as np

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "samplers")
SEED = 20260303


# --------------------------------------------------------------------------------------------------
# Schedules (float64). The C++ tests build the same schedule from the recipe with NoiseSchedule's
# constructors (tests/core/core_fixtures.hpp, make_schedule).


def schedule_betas(recipe):
    kind = recipe["kind"]
    T = recipe.get("T")
    if kind == "linear":
        return np.linspace(recipe["beta_start"], recipe["beta_end"], T, dtype=np.float64)
    if kind == "scaled_linear":
        return np.linspace(math.sqrt(recipe["beta_start"]), math.sqrt(recipe["beta_end"]), T, dtype=np.float64) ** 2
    if kind == "cosine":
        s, max_beta = recipe["s"], recipe["max_beta"]

        def f(u):
            return math.cos((u + s) / (1.0 + s) * math.pi / 2.0) ** 2

        return np.array([min(1.0 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)], dtype=np.float64)
    if kind == "zero_terminal_snr":
        betas = schedule_betas(recipe["of"])
        r = np.sqrt(np.cumprod(1.0 - betas))
        r0, rT = r[0], r[-1]
        r = (r - rT) * r0 / (r0 - rT)
        ab = r * r
        out = np.empty_like(ab)
        out[0] = 1.0 - ab[0]
        out[1:] = 1.0 - ab[1:] / ab[:-1]
        out[-1] = 1.0
        return out
    raise ValueError(kind)


def alphas_cumprod(recipe):
    return np.cumprod(1.0 - schedule_betas(recipe))


LINEAR = {"kind": "linear", "T": 1000, "beta_start": 1e-4, "beta_end": 0.02}
COSINE = {"kind": "cosine", "T": 1000, "s": 0.008, "max_beta": 0.999}
ZERO_SNR = {"kind": "zero_terminal_snr", "of": {"kind": "scaled_linear", "T": 1000, "beta_start": 0.00085,
                                                "beta_end": 0.012}}


# --------------------------------------------------------------------------------------------------
# Timestep spacing (diffusers' set_timesteps, with NumPy's own arithmetic)


def spaced(T, N, spacing, offset=0):
    if spacing == "leading":
        ratio = T // N
        ts = (np.arange(0, N) * ratio).round()[::-1].astype(np.int64) + offset
    elif spacing == "trailing":
        ts = np.round(np.arange(T, 0, -T / N)).astype(np.int64) - 1
        ts = ts[:N]  # NumPy's arange can yield an (N+1)-th value, -1; it is not a timestep
    elif spacing == "linspace":
        ts = np.linspace(0, T - 1, N).round()[::-1].astype(np.int64)
    else:
        raise ValueError(spacing)
    return [int(t) for t in ts]


def dpm_timesteps(T, N, spacing, offset=0):
    # DPMSolverMultistepScheduler: N + 1 points of linspace / leading without the smallest (the solver ends
    # at sigma = 0 instead); trailing as the others. With N + 1 > T there are not enough distinct training
    # timesteps, and every timestep is used (diffusers would repeat some).
    if spacing == "trailing":
        return spaced(T, N, "trailing")
    if N + 1 > T:
        return list(range(T - 1, -1, -1))
    if spacing == "linspace":
        return [int(t) for t in np.linspace(0, T - 1, N + 1).round()[::-1][:-1]]
    ratio = T // (N + 1)
    return [int(t) + offset for t in (np.arange(0, N + 1) * ratio).round()[::-1][:-1]]


def karras(sigma_min, sigma_max, n, rho=7.0):
    ramp = np.linspace(0, 1, n)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def sigma_to_t(sigma, log_sigmas):
    # Piecewise-linear interpolation of t against log sigma (k-diffusion's t_to_sigma inverse).
    ls = math.log(sigma)
    above = np.nonzero(ls - log_sigmas >= 0)[0]
    low = int(above[-1]) if len(above) else 0
    low = min(low, len(log_sigmas) - 2)
    lo, hi = log_sigmas[low], log_sigmas[low + 1]
    w = min(max((lo - ls) / (lo - hi), 0.0), 1.0)
    return (1 - w) * low + w * (low + 1)


def sigma_table(ab):
    ab = ab.copy()
    ab[ab == 0.0] = 2.0 ** -24  # zero terminal SNR: a finite sigma_max, as diffusers sets it
    return np.sqrt((1 - ab) / ab)


# --------------------------------------------------------------------------------------------------
# Predictions and bounds


def to_x0(kind, out, x, ab):
    if kind == "epsilon":
        return (x - math.sqrt(1 - ab) * out) / math.sqrt(ab)
    if kind == "sample":
        return out
    return math.sqrt(ab) * x - math.sqrt(1 - ab) * out


def to_eps(kind, out, x, ab):
    if kind == "epsilon":
        return out
    if kind == "sample":
        return (x - math.sqrt(ab) * out) / math.sqrt(1 - ab)
    return math.sqrt(ab) * out + math.sqrt(1 - ab) * x


def bound(x0, clipping):
    if clipping is None:
        return x0
    if clipping["mode"] == "clip":
        r = clipping["range"]
        return np.clip(x0, -r, r)
    # Imagen's dynamic thresholding, per batch element, with a linearly interpolated quantile.
    flat = x0.reshape(x0.shape[0], -1)
    s = np.quantile(np.abs(flat), clipping["ratio"], axis=1)  # 'linear' interpolation, as torch.quantile
    s = np.clip(s, 1.0, clipping["max_value"])[:, None]
    return (np.clip(flat, -s, s) / s).reshape(x0.shape)


def split_output(out, x):
    if out.shape[1] == 2 * x.shape[1]:
        c = x.shape[1]
        return out[:, :c], out[:, c:]
    return out, None


# --------------------------------------------------------------------------------------------------
# Single steps


def ddpm_step(ab_all, ts, i, out, x, noise, kind, variance_type, clipping):
    t = ts[i]
    ab = ab_all[t]
    ab_prev = ab_all[ts[i + 1]] if i + 1 < len(ts) else 1.0
    beta = 1 - ab / ab_prev
    pred, var_values = split_output(out, x)
    x0 = bound(to_x0(kind, pred, x, ab), clipping)
    mean = (math.sqrt(ab_prev) * beta / (1 - ab)) * x0 + (math.sqrt(ab / ab_prev) * (1 - ab_prev) / (1 - ab)) * x
    if i + 1 == len(ts):
        return mean, x0
    post_var = max((1 - ab_prev) / (1 - ab) * beta, 1e-20)
    if variance_type == "fixed_small":
        std = math.sqrt(post_var)
    elif variance_type == "fixed_small_log":
        std = math.exp(0.5 * math.log(post_var))
    elif variance_type == "fixed_large":
        std = math.sqrt(beta)
    else:
        frac = (var_values + 1) / 2
        std = np.exp(0.5 * (frac * math.log(beta) + (1 - frac) * math.log(post_var)))
    return mean + std * noise, x0


def ddim_step(ab_all, ts, i, out, x, noise, kind, eta, set_alpha_to_one, clipping, use_clipped):
    t = ts[i]
    ab = ab_all[t]
    ab_prev = ab_all[ts[i + 1]] if i + 1 < len(ts) else (1.0 if set_alpha_to_one else ab_all[0])
    pred, _ = split_output(out, x)
    x0 = to_x0(kind, pred, x, ab)
    eps = to_eps(kind, pred, x, ab)
    x0 = bound(x0, clipping)
    if clipping is not None and use_clipped:
        eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
    var = (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)
    sigma = eta * math.sqrt(var)
    x_prev = math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev - sigma ** 2) * eps
    if sigma > 0:
        x_prev = x_prev + sigma * noise
    return x_prev, x0


# --------------------------------------------------------------------------------------------------
# Sigma-space samplers: grids and whole runs


def dpm_grid(ab_all, N, spacing, karras_sigmas=False, final="zero"):
    T = len(ab_all)
    table = sigma_table(ab_all)
    if karras_sigmas:
        sig = karras(table[0], table[-1], N)
        log_table = np.log(table)
        ts = [int(np.round(sigma_to_t(s, log_table))) for s in sig]
    else:
        ts = dpm_timesteps(T, N, spacing)
        sig = table[ts]
    last = 0.0 if final == "zero" else table[0]
    return ts, np.concatenate([sig, [last]])


def euler_grid(ab_all, N, spacing, karras_sigmas=False, final="zero"):
    table = sigma_table(ab_all)
    ts = spaced(len(ab_all), N, spacing)
    sig = table[ts]
    if karras_sigmas:
        sig = karras(sig[-1], sig[0], N)
        ts = [int(np.round(sigma_to_t(s, np.log(table)))) for s in sig]
    last = 0.0 if final == "zero" else table[0]
    return ts, np.concatenate([sig, [last]])


def vp(sigma):
    # alpha and sigma of the variance-preserving x_t at the VE noise level sigma.
    alpha = 1.0 / math.sqrt(sigma ** 2 + 1.0)
    return alpha, sigma * alpha


def run_dpm(model, kind, x, ts, sig, order=2, lower_order_final=True, clipping=None, solver_type="midpoint"):
    # DPM-Solver++ (data prediction), multistep; the midpoint second-order update is Lu et al. 2022, Alg. 2,
    # "heun" the variant diffusers offers.
    N = len(ts)
    history = []
    lower = 0
    xs = []
    for i in range(N):
        s0, s_next = sig[i], sig[i + 1]
        a0, sg0 = vp(s0)
        out = model(x, ts[i])
        m0 = bound(to_x0(kind, out, x, a0 ** 2), clipping)
        final_low = i == N - 1 and ((lower_order_final and N < 15) or s_next == 0.0)
        if s_next == 0.0:
            x_next = m0
        else:
            at, st = vp(s_next)
            lam_t, lam_0 = math.log(at) - math.log(st), math.log(a0) - math.log(sg0)
            h = lam_t - lam_0
            if order == 1 or lower < 1 or final_low:
                x_next = (st / sg0) * x - at * (math.exp(-h) - 1.0) * m0
            else:
                a1, sg1 = vp(sig[i - 1])
                lam_1 = math.log(a1) - math.log(sg1)
                r0 = (lam_0 - lam_1) / h
                d1 = (m0 - history[-1]) / r0
                if solver_type == "midpoint":
                    x_next = (st / sg0) * x - at * (math.exp(-h) - 1.0) * m0 - 0.5 * at * (math.exp(-h) - 1.0) * d1
                else:
                    x_next = (st / sg0) * x - at * (math.exp(-h) - 1.0) * m0 + at * ((math.exp(-h) - 1.0) / h + 1.0) * d1
        history.append(m0)
        lower = min(lower + 1, order)
        x = x_next
        xs.append(x)
    return xs


def run_euler(model, kind, x, ts, sig, noises=None, clipping=None):
    # k-diffusion's Euler / Euler ancestral on x / sqrt(alpha_bar) = x0 + sigma eps, written back to the
    # variance-preserving x after each step (x_vp = x_ve / sqrt(sigma^2 + 1)).
    xs = []
    for i in range(len(ts)):
        s, s_next = sig[i], sig[i + 1]
        out = model(x, ts[i])
        x_ve = x * math.sqrt(s * s + 1.0)
        x0 = bound(to_x0(kind, out, x, 1.0 / (s * s + 1.0)), clipping)
        d = (x_ve - x0) / s
        if noises is None:
            x_ve = x_ve + d * (s_next - s)
        else:
            s_up = math.sqrt(s_next ** 2 * (s ** 2 - s_next ** 2) / s ** 2)
            s_down = math.sqrt(s_next ** 2 - s_up ** 2)
            x_ve = x_ve + d * (s_down - s) + noises[i] * s_up
        x = x_ve / math.sqrt(s_next * s_next + 1.0)
        xs.append(x)
    return xs


def run_euler_churn(model, kind, x, ts, sig, churn, noises, clipping=None):
    # diffusers' EulerDiscreteScheduler.step with s_churn, s_tmin, s_tmax, s_noise, on the variance-preserving
    # x: gamma = min(s_churn / N, sqrt(2) - 1) where s_tmin <= sigma <= s_tmax; noise (the next of `noises`)
    # is drawn only there, raising sigma to sigma_hat = sigma (1 + gamma); the x0 of an epsilon prediction
    # (made at sigma) is x_ve - sigma_hat eps, of a velocity x_ve / (sigma^2 + 1) - sigma / sqrt(sigma^2 + 1) v.
    N = len(ts)
    xs = []
    drawn = 0
    for i in range(N):
        s, s_next = sig[i], sig[i + 1]
        out = model(x, ts[i])
        in_range = churn["s_tmin"] <= s <= churn["s_tmax"]
        gamma = min(churn["s_churn"] / N, 2 ** 0.5 - 1) if in_range else 0.0
        s_hat = s * (gamma + 1.0)
        x_ve = x * math.sqrt(s * s + 1.0)
        if gamma > 0:
            x_ve = x_ve + noises[drawn] * churn["s_noise"] * math.sqrt(s_hat ** 2 - s ** 2)
            drawn += 1
        if kind == "epsilon":
            x0 = x_ve - s_hat * out
        elif kind == "velocity":
            x0 = out * (-s / math.sqrt(s * s + 1.0)) + x_ve / (s * s + 1.0)
        else:
            x0 = out
        x0 = bound(x0, clipping)
        d = (x_ve - x0) / s_hat
        x_ve = x_ve + d * (s_next - s_hat)
        x = x_ve / math.sqrt(s_next * s_next + 1.0)
        xs.append(x)
    return xs


# --------------------------------------------------------------------------------------------------
# The Gaussian-mixture oracle: E[eps | x_t] for x0 ~ sum_k w_k N(mu_k, s_k^2 I), by Tweedie's formula


class Mixture:
    def __init__(self, ab_all, weights, means, stddevs):
        self.ab = ab_all
        self.w = np.asarray(weights, dtype=np.float64) / np.sum(weights)
        self.mu = np.asarray(means, dtype=np.float64)
        self.s = np.asarray(stddevs, dtype=np.float64)

    def eps_at(self, x, ab):
        B = x.shape[0]
        X = x.reshape(B, -1)
        D = X.shape[1]
        c = math.sqrt(ab)
        v = ab * self.s ** 2 + (1 - ab)
        d2 = ((X[:, None, :] - c * self.mu[None, :, :]) ** 2).sum(axis=2)  # B x K
        logp = np.log(self.w)[None, :] - 0.5 * D * np.log(v)[None, :] - d2 / (2 * v[None, :])
        logp -= logp.max(axis=1, keepdims=True)
        r = np.exp(logp)
        r /= r.sum(axis=1, keepdims=True)
        # grad log p = -sum_k r_k (x - c mu_k) / v_k
        g = (r[:, :, None] * (X[:, None, :] - c * self.mu[None, :, :]) / v[None, :, None]).sum(axis=1)
        return (math.sqrt(1 - ab) * g).reshape(x.shape)

    def __call__(self, x, t):
        return self.eps_at(x, self.ab[t])


MIXTURE = {"weights": [0.5, 0.3, 0.2], "means": [[-4.0, 0.0], [3.0, 3.0], [3.0, -3.0]], "stddevs": [0.5, 0.8, 0.6]}


# --------------------------------------------------------------------------------------------------
# Writing


def flat(a):
    return [float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def write(name, payload):
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, name), "w") as f:
        json.dump(payload, f, separators=(",", ":"))
        f.write("\n")


def digest(ts):
    return [ts[0], ts[-1], int(sum(ts)), int(sum((k + 1) * t for k, t in enumerate(ts)))]


def make_timesteps():
    full = []
    for T in [1, 2, 3, 7, 10, 17, 48]:
        for N in range(1, T + 1):
            entry = {"T": T, "N": N, "leading": spaced(T, N, "leading"), "trailing": spaced(T, N, "trailing"),
                     "linspace": spaced(T, N, "linspace")}
            if (N - 1) * (T // N) + 1 < T:
                entry["leading_offset1"] = spaced(T, N, "leading", 1)
            full.append(entry)
    digests = []
    for T in [1000]:
        for N in range(1, T + 1):
            d = {"T": T, "N": N}
            for sp in ["leading", "trailing", "linspace"]:
                d[sp] = digest(spaced(T, N, sp))
            if (N - 1) * (T // N) + 1 < T:
                d["leading_offset1"] = digest(spaced(T, N, "leading", 1))
            digests.append(d)
    lists = []
    for N in [1, 2, 3, 7, 10, 20, 25, 50, 61, 100, 103, 250, 333, 500, 999, 1000]:
        lists.append({"T": 1000, "N": N, "leading": spaced(1000, N, "leading"),
                      "trailing": spaced(1000, N, "trailing"), "linspace": spaced(1000, N, "linspace")})
    # Karras ramps and the log-sigma interpolation back to t, on the linear schedule's sigma table.
    table = sigma_table(alphas_cumprod(LINEAR))
    karras_cases = []
    for n in [1, 2, 5, 20]:
        sig = karras(table[0], table[-1], n)
        karras_cases.append({"sigma_min": float(table[0]), "sigma_max": float(table[-1]), "N": n,
                             "sigmas": flat(sig), "t": [sigma_to_t(s, np.log(table)) for s in sig]})
    probes = [float(v) for v in [1e-3, table[0], 0.5 * (table[3] + table[4]), 1.0, 10.0, table[-1], 1e4]]
    sigma_t = {"schedule": LINEAR, "sigmas": probes, "t": [sigma_to_t(s, np.log(table)) for s in probes]}
    dpm = []
    for T in [10, 1000]:
        for N in sorted({1, 2, 3, 9, 10, 20, min(T, 50), T}):
            if N <= T:
                dpm.append({"T": T, "N": N, "linspace": dpm_timesteps(T, N, "linspace"),
                            "leading": dpm_timesteps(T, N, "leading"), "trailing": dpm_timesteps(T, N, "trailing")})
    write("timesteps.json", {"full": full, "digests": digests, "lists": lists, "karras": karras_cases,
                             "sigma_to_t": sigma_t, "dpm": dpm})


KINDS = ["epsilon", "sample", "velocity"]


def make_steps(rng):
    shape = [2, 3, 2, 2]
    x = rng.standard_normal(shape) * 1.5
    out = rng.standard_normal(shape)
    var_values = rng.uniform(-1.0, 1.0, shape)
    out2c = np.concatenate([out, var_values], axis=1)
    noise = rng.standard_normal(shape)
    ab = alphas_cumprod(LINEAR)
    inputs = {"shape": shape, "x": flat(x), "output": flat(out), "output2c": flat(out2c), "noise": flat(noise)}

    ddpm_cases = []
    configs = [
        ({"num_inference_steps": 0, "timestep_spacing": "leading"}, [0, 498, 999]),
        ({"num_inference_steps": 10, "timestep_spacing": "leading", "steps_offset": 1}, [3, 9]),
        ({"num_inference_steps": 7, "timestep_spacing": "trailing"}, [0, 6]),
        ({"num_inference_steps": 7, "timestep_spacing": "linspace"}, [2]),
        # improved-diffusion's respacing "10" (space_timesteps(1000, "10")) as a timestep list
        ({"timesteps": [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]}, [4, 9]),
    ]
    for cfg, steps in configs:
        T = 1000
        if "timesteps" in cfg:
            ts = cfg["timesteps"]
        else:
            N = cfg["num_inference_steps"] or T
            ts = spaced(T, N, cfg["timestep_spacing"], cfg.get("steps_offset", 0))
        for i in steps:
            for vt in ["fixed_small", "fixed_small_log", "fixed_large", "learned_range"]:
                for kind in KINDS:
                    o = out2c if vt == "learned_range" else out
                    xp, x0 = ddpm_step(ab, ts, i, o, x, noise, kind, vt, None)
                    ddpm_cases.append({"options": dict(cfg, variance_type=vt), "i": i, "t": ts[i], "kind": kind,
                                       "output": "output2c" if vt == "learned_range" else "output",
                                       "x_prev": flat(xp), "x0": flat(x0)})
    # A 2C output under a fixed variance: the second half is ignored.
    ts = spaced(1000, 10, "leading")
    xp, x0 = ddpm_step(ab, ts, 4, out2c, x, noise, "epsilon", "fixed_small", None)
    ddpm_cases.append({"options": {"num_inference_steps": 10, "variance_type": "fixed_small"}, "i": 4, "t": ts[4],
                       "kind": "epsilon", "output": "output2c", "x_prev": flat(xp), "x0": flat(x0)})
    for clipping in [{"mode": "clip", "range": 1.0}, {"mode": "clip", "range": 2.5},
                     {"mode": "dynamic_threshold", "ratio": 0.9, "max_value": 1.5},
                     {"mode": "dynamic_threshold", "ratio": 0.5, "max_value": 4.0}]:
        for i, kind in [(2, "epsilon"), (9, "sample")]:
            xp, x0 = ddpm_step(ab, ts, i, out * 3.0, x, noise, kind, "fixed_small", clipping)
            ddpm_cases.append({"options": {"num_inference_steps": 10, "variance_type": "fixed_small",
                                           "clipping": clipping}, "i": i, "t": ts[i], "kind": kind,
                               "output": "output", "output_scale": 3.0, "x_prev": flat(xp), "x0": flat(x0)})

    ddim_cases = []
    configs = [
        ({"num_inference_steps": 50, "timestep_spacing": "leading"}, [0, 25, 49]),
        ({"num_inference_steps": 10, "timestep_spacing": "leading", "steps_offset": 1}, [9]),
        ({"num_inference_steps": 7, "timestep_spacing": "trailing"}, [1, 6]),
        ({"num_inference_steps": 7, "timestep_spacing": "linspace"}, [1, 6]),
        # improved-diffusion's "ddim50" respacing (0, 20, ..., 980) as a timestep list
        ({"timesteps": list(range(980, -1, -20))}, [10, 49]),
    ]
    for cfg, steps in configs:
        ts = cfg["timesteps"] if "timesteps" in cfg else spaced(1000, cfg["num_inference_steps"],
                                                                  cfg["timestep_spacing"], cfg.get("steps_offset", 0))
        for i in steps:
            for eta in [0.0, 0.5, 1.0]:
                for kind in KINDS:
                    for one in ([True, False] if i + 1 == len(ts) else [True]):
                        xp, x0 = ddim_step(ab, ts, i, out, x, noise, kind, eta, one, None, True)
                        ddim_cases.append({"options": dict(cfg, eta=eta, set_alpha_to_one=one), "i": i, "t": ts[i],
                                           "kind": kind, "output": "output", "x_prev": flat(xp), "x0": flat(x0)})
    ts = spaced(1000, 50, "leading")
    for clipping in [{"mode": "clip", "range": 1.0}, {"mode": "dynamic_threshold", "ratio": 0.9, "max_value": 1.5}]:
        for use_clipped in [True, False]:
            for i, kind, eta in [(30, "epsilon", 0.0), (40, "velocity", 0.5)]:
                xp, x0 = ddim_step(ab, ts, i, out * 3.0, x, noise, kind, eta, True, clipping, use_clipped)
                ddim_cases.append({"options": {"num_inference_steps": 50, "eta": eta, "clipping": clipping,
                                               "use_clipped_model_output": use_clipped},
                                   "i": i, "t": ts[i], "kind": kind, "output": "output", "output_scale": 3.0,
                                   "x_prev": flat(xp), "x0": flat(x0)})
    # Zero terminal SNR with trailing spacing: the first step has alpha_bar = 0 (v and x0 predictions only).
    abz = alphas_cumprod(ZERO_SNR)
    ts = spaced(1000, 10, "trailing")
    zero_cases = []
    for kind in ["velocity", "sample"]:
        for i in [0, 1]:
            xp, x0 = ddim_step(abz, ts, i, out, x, noise, kind, 0.0, True, None, True)
            zero_cases.append({"sampler": "ddim", "options": {"num_inference_steps": 10, "timestep_spacing": "trailing"},
                               "i": i, "t": ts[i], "kind": kind, "output": "output", "x_prev": flat(xp), "x0": flat(x0)})
            xp, x0 = ddpm_step(abz, ts, i, out, x, noise, kind, "fixed_small", None)
            zero_cases.append({"sampler": "ddpm", "options": {"num_inference_steps": 10, "timestep_spacing": "trailing"},
                               "i": i, "t": ts[i], "kind": kind, "output": "output", "x_prev": flat(xp), "x0": flat(x0)})
    write("steps.json", {"schedule": LINEAR, "zero_snr_schedule": ZERO_SNR, "inputs": inputs, "ddpm": ddpm_cases,
                         "ddim": ddim_cases, "zero_snr": zero_cases})


def make_trajectories(rng):
    B = 16
    x_T = rng.standard_normal((B, 2))
    runs = []
    for recipe_name, recipe in [("linear", LINEAR), ("cosine", COSINE)]:
        ab = alphas_cumprod(recipe)
        model = Mixture(ab, **MIXTURE)

        def ddim_run(N, spacing, eta=0.0, noises=None, kind="epsilon"):
            ts = spaced(1000, N, spacing)
            x = x_T.copy()
            for i in range(N):
                x, _ = ddim_step(ab, ts, i, model(x, ts[i]), x, None if noises is None else noises[i], kind, eta,
                                 True, None, True)
            return ts, x

        for N, spacing in [(50, "leading"), (10, "trailing"), (7, "linspace")]:
            ts, x = ddim_run(N, spacing)
            runs.append({"sampler": "ddim", "schedule": recipe, "options": {"num_inference_steps": N,
                                                                              "timestep_spacing": spacing},
                         "timesteps": ts, "x": flat(x)})
        # DDPM and DDIM eta = 1 with stored noise (one draw per step)
        for sampler in ["ddpm", "ddim"]:
            N = 10
            ts = spaced(1000, N, "trailing")
            noises = rng.standard_normal((N, B, 2))
            x = x_T.copy()
            for i in range(N):
                if sampler == "ddpm":
                    x, _ = ddpm_step(ab, ts, i, model(x, ts[i]), x, noises[i], "epsilon", "fixed_small", None)
                else:
                    x, _ = ddim_step(ab, ts, i, model(x, ts[i]), x, noises[i], "epsilon", 1.0, True, None, True)
            opts = {"num_inference_steps": N, "timestep_spacing": "trailing"}
            if sampler == "ddim":
                opts["eta"] = 1.0
            runs.append({"sampler": sampler, "schedule": recipe, "options": opts, "timesteps": ts,
                         "noises": flat(noises), "x": flat(x)})
        for N, spacing, use_karras in [(20, "linspace", False), (10, "linspace", True), (8, "trailing", False),
                                       (25, "leading", False), (5, "linspace", False)]:
            ts, sig = dpm_grid(ab, N, spacing, use_karras)
            xs = run_dpm(model, "epsilon", x_T.copy(), ts, sig)
            runs.append({"sampler": "dpmsolver", "schedule": recipe,
                         "options": {"num_inference_steps": N, "timestep_spacing": spacing,
                                     "use_karras_sigmas": use_karras},
                         "timesteps": ts, "sigmas": flat(sig), "x": flat(xs[-1]), "x_mid": flat(xs[len(xs) // 2])})
        for opts in [{"solver_type": "heun"}, {"solver_order": 1}]:
            ts, sig = dpm_grid(ab, 10, "linspace")
            xs = run_dpm(model, "epsilon", x_T.copy(), ts, sig, order=opts.get("solver_order", 2),
                         solver_type=opts.get("solver_type", "midpoint"))
            runs.append({"sampler": "dpmsolver", "schedule": recipe,
                         "options": dict(opts, num_inference_steps=10, timestep_spacing="linspace"),
                         "timesteps": ts, "sigmas": flat(sig), "x": flat(xs[-1]), "x_mid": flat(xs[len(xs) // 2])})
        ts, sig = dpm_grid(ab, 12, "linspace", False, "sigma_min")
        xs = run_dpm(model, "epsilon", x_T.copy(), ts, sig)
        runs.append({"sampler": "dpmsolver", "schedule": recipe,
                     "options": {"num_inference_steps": 12, "timestep_spacing": "linspace", "final_sigma": "sigma_min"},
                     "timesteps": ts, "sigmas": flat(sig), "x": flat(xs[-1]), "x_mid": flat(xs[len(xs) // 2])})
        for N, spacing, use_karras in [(50, "linspace", False), (25, "linspace", True), (10, "trailing", False),
                                       (10, "leading", False)]:
            ts, sig = euler_grid(ab, N, spacing, use_karras)
            xs = run_euler(model, "epsilon", x_T.copy(), ts, sig)
            runs.append({"sampler": "euler", "schedule": recipe,
                         "options": {"num_inference_steps": N, "timestep_spacing": spacing,
                                     "use_karras_sigmas": use_karras},
                         "timesteps": ts, "sigmas": flat(sig), "x": flat(xs[-1]), "x_mid": flat(xs[len(xs) // 2])})
        N = 10
        ts, sig = euler_grid(ab, N, "linspace")
        noises = rng.standard_normal((N, B, 2))
        xs = run_euler(model, "epsilon", x_T.copy(), ts, sig, noises)
        runs.append({"sampler": "euler_ancestral", "schedule": recipe,
                     "options": {"num_inference_steps": N, "timestep_spacing": "linspace"},
                     "timesteps": ts, "sigmas": flat(sig), "noises": flat(noises), "x": flat(xs[-1]),
                     "x_mid": flat(xs[len(xs) // 2])})
    # Zero terminal SNR, trailing spacing: the sigma-space samplers start at sigma_max = sqrt(2^24 - 1).
    abz = alphas_cumprod(ZERO_SNR)
    model = Mixture(abz, **MIXTURE)
    ts, sig = dpm_grid(abz, 10, "trailing")
    xs = run_dpm(model, "epsilon", x_T.copy(), ts, sig)
    runs.append({"sampler": "dpmsolver", "schedule": ZERO_SNR,
                 "options": {"num_inference_steps": 10, "timestep_spacing": "trailing"},
                 "timesteps": ts, "sigmas": flat(sig), "x": flat(xs[-1]), "x_mid": flat(xs[len(xs) // 2])})
    ts, sig = euler_grid(abz, 10, "trailing")
    xs = run_euler(model, "epsilon", x_T.copy(), ts, sig)
    runs.append({"sampler": "euler", "schedule": ZERO_SNR,
                 "options": {"num_inference_steps": 10, "timestep_spacing": "trailing"},
                 "timesteps": ts, "sigmas": flat(sig), "x": flat(xs[-1]), "x_mid": flat(xs[len(xs) // 2])})
    write("trajectories.json", {"mixture": MIXTURE, "x_T": flat(x_T), "batch": B, "dim": 2, "runs": runs})


def make_sigma_steps(rng):
    # Single sigma-space steps with every prediction kind and bounds: the first steps of DPM-Solver++ and
    # Euler (ancestral) from a fixed x with fixed outputs (a model that returns out_i at step i).
    shape = [2, 3, 2, 2]
    x = rng.standard_normal(shape)
    outs = rng.standard_normal([4] + shape)
    noises = rng.standard_normal([4] + shape)
    ab = alphas_cumprod(LINEAR)
    cases = []

    def replay(clipping):
        # A model that returns out_i at its i-th call, scaled up when there are bounds to apply.
        def model(xx, t, _it=iter(range(4))):
            return outs[next(_it)] * (3.0 if clipping else 1.0)
        return model

    def add_case(sampler, opts, kind, clipping, ts, sig, xs):
        if clipping:
            opts["clipping"] = clipping
        cases.append({"sampler": sampler, "options": opts, "kind": kind,
                      "output_scale": 3.0 if clipping else 1.0, "timesteps": ts, "sigmas": flat(sig),
                      "xs": [flat(v) for v in xs]})

    for kind in KINDS:
        for clipping in [None, {"mode": "clip", "range": 1.0},
                         {"mode": "dynamic_threshold", "ratio": 0.9, "max_value": 1.5}]:
            for sampler, N, spacing, use_karras in [("dpmsolver", 4, "linspace", False),
                                                    ("dpmsolver", 4, "leading", True),
                                                    ("euler", 4, "trailing", False),
                                                    ("euler", 4, "linspace", True),
                                                    ("euler_ancestral", 4, "leading", False)]:
                if sampler == "dpmsolver":
                    ts, sig = dpm_grid(ab, N, spacing, use_karras)
                    xs = run_dpm(replay(clipping), kind, x.copy(), ts, sig, clipping=clipping)
                else:
                    ts, sig = euler_grid(ab, N, spacing, use_karras)
                    xs = run_euler(replay(clipping), kind, x.copy(), ts, sig,
                                   noises if sampler == "euler_ancestral" else None, clipping)
                opts = {"num_inference_steps": N, "timestep_spacing": spacing, "use_karras_sigmas": use_karras}
                add_case(sampler, opts, kind, clipping, ts, sig, xs)
    # Euler with churn: at N = 4 gamma = sqrt(2) - 1 (s_churn / N = 0.75 is capped). Of the sigmas (157.4, 9.49,
    # 1.46, 0.01) of linspace spacing the middle two lie in [s_tmin, s_tmax], of trailing's (157.4, 17.2, 3.42,
    # 0.95) the last three: noise is drawn at 2 and 3 steps, never at the first.
    churn = {"s_churn": 3.0, "s_tmin": 0.5, "s_tmax": 100.0, "s_noise": 1.003}
    for kind in KINDS:
        for clipping in [None, {"mode": "clip", "range": 1.0}]:
            for N, spacing in [(4, "linspace"), (4, "trailing")]:
                ts, sig = euler_grid(ab, N, spacing, False)
                xs = run_euler_churn(replay(clipping), kind, x.copy(), ts, sig, churn, noises, clipping)
                opts = {"num_inference_steps": N, "timestep_spacing": spacing, "use_karras_sigmas": False, **churn}
                add_case("euler", opts, kind, clipping, ts, sig, xs)
    write("sigma_steps.json", {"schedule": LINEAR, "shape": shape, "x": flat(x), "outputs": flat(outs),
                               "noises": flat(noises), "cases": cases})


def main():
    rng = np.random.default_rng(SEED)
    make_timesteps()
    make_steps(rng)
    make_trajectories(rng)
    make_sigma_steps(rng)


if __name__ == "__main__":
    main()
