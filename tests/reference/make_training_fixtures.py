#!/usr/bin/python3
"""Fixtures for the training objectives (include/ddpm/loss.hpp, vlb.hpp): tests/data/training/losses.json.

Run with Debian's interpreter (python3-torch 1.13, numpy):
    /usr/bin/python3 tests/reference/make_training_fixtures.py [--check-upstream /path/to/improved-diffusion]

Everything is float64 torch, written here from the formulas (not from ddpm's code):
  - the simple loss mean_b w_b mean_{chw} (target - out)^2 for each prediction kind (eps, x0, v) and each
    weighting (none, Min-SNR-5 as diffusers' train_text_to_image computes it, P2 with k = 1, gamma = 1 as
    the official P2-weighting code computes it), and its gradient w.r.t. the output by loss.backward();
  - improved-diffusion's _vb_terms_bpd (KL for t > 0, the tanh-CDF discretized decoder NLL at t = 0, in
    bits/dim) for fixed_small, fixed_large and learned_range, each prediction kind, with and without clipping;
    _prior_bpd; and the hybrid loss (RESCALED_MSE with learned_range: mse + T/1000 * vb with the mean half
    detached) with its gradient w.r.t. the whole 2C output by autograd.
The KL's variance part is written as expm1(d) - d (d = lv1 - lv2), which equals improved-diffusion's
-1 - d + exp(d) without its cancellation.

Confirmed against improved-diffusion's own code: with --check-upstream pointing at a checkout of
github:openai/improved-diffusion (run outside the project, nothing of it is committed), the script builds
its GaussianDiffusion on the same betas and compares _vb_terms_bpd, _prior_bpd and training_losses (loss,
mse, vb) and the hybrid gradient (autograd through its training_losses) with the values written here
(upstream's float32 cast of the schedule coefficients in _extract_into_tensor replaced by a float64 gather). On
2026-12-04 (improved-diffusion HEAD of the mirror) the largest difference was 3.6e-13, relative to
max(|value|, 1e-3 bits) for the bound's terms and to the largest gradient element for gradients.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "training", "losses.json")


def cosine_betas(T, max_beta=0.999):
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
    return np.array([min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)], dtype=np.float64)


class Sched:
    def __init__(self, betas):
        self.betas = np.asarray(betas, dtype=np.float64)
        self.T = len(betas)
        b = self.betas
        self.ab = np.cumprod(1 - b)
        self.ab_prev = np.append(1.0, self.ab[:-1])
        self.post_var = b * (1 - self.ab_prev) / (1 - self.ab)
        self.post_logvar_clipped = np.log(np.append(self.post_var[1], self.post_var[1:]))
        self.coef1 = b * np.sqrt(self.ab_prev) / (1 - self.ab)
        self.coef2 = (1 - self.ab_prev) * np.sqrt(1 - b) / (1 - self.ab)
        self.large_logvar = np.log(np.append(self.post_var[1], b[1:]))

    def g(self, arr, t, ndim=4):
        return torch.tensor(arr[t]).reshape(-1, *([1] * (ndim - 1)))


def pred_x0(s, kind, out, x_t, t):
    ab = s.g(s.ab, t)
    if kind == "epsilon":
        return torch.sqrt(1 / ab) * x_t - torch.sqrt((1 - ab) / ab) * out
    if kind == "sample":
        return out
    return torch.sqrt(ab) * x_t - torch.sqrt(1 - ab) * out


def approx_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def disc_loglik(x, means, log_scales):
    c = x - means
    inv = torch.exp(-log_scales)
    cdf_plus = approx_cdf(inv * (c + 1 / 255))
    cdf_min = approx_cdf(inv * (c - 1 / 255))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_1m = torch.log((1 - cdf_min).clamp(min=1e-12))
    delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_1m, delta))


def kl(m1, lv1, m2, lv2):
    d = lv1 - lv2
    return 0.5 * ((torch.expm1(d) - d) + (m1 - m2) ** 2 * torch.exp(-lv2))


def mean_flat(x):
    return x.mean(dim=list(range(1, x.ndim)))


def vb_terms(s, var, kind, out, x0, x_t, t, clip):
    C = x0.shape[1]
    if var == "learned_range":
        mean_out, v = out[:, :C], out[:, C:]
        frac = (v + 1) / 2
        lv = frac * s.g(np.log(s.betas), t) + (1 - frac) * s.g(s.post_logvar_clipped, t)
    else:
        mean_out = out
        lv = (s.g(s.large_logvar if var == "fixed_large" else s.post_logvar_clipped, t)).expand_as(x0)
    px0 = pred_x0(s, kind, mean_out, x_t, t)
    if clip:
        px0 = px0.clamp(-1, 1)
    mean = s.g(s.coef1, t) * px0 + s.g(s.coef2, t) * x_t
    true_mean = s.g(s.coef1, t) * x0 + s.g(s.coef2, t) * x_t
    true_lv = s.g(s.post_logvar_clipped, t).expand_as(x0)
    k = mean_flat(kl(true_mean, true_lv, mean, lv)) / math.log(2.0)
    nll = -mean_flat(disc_loglik(x0, mean, 0.5 * lv)) / math.log(2.0)
    return torch.where(torch.tensor(t) == 0, nll, k)


def target_of(s, kind, x0, eps, t):
    ab = s.g(s.ab, t)
    return {"epsilon": eps, "sample": x0, "velocity": torch.sqrt(ab) * eps - torch.sqrt(1 - ab) * x0}[kind]


def min_snr(s, t, gamma, kind):
    snr = torch.tensor(s.ab[t] / (1 - s.ab[t]))
    w = torch.stack([snr, gamma * torch.ones_like(snr)], dim=1).min(dim=1)[0]
    if kind == "epsilon":
        w = w / snr
        w[snr == 0] = 1.0
    elif kind == "velocity":
        w = w / (snr + 1)
    return w


def p2(s, t, k, gamma):
    snr = 1.0 / (1 - s.ab) - 1
    return torch.tensor(1 / (k + snr) ** gamma)[t]


def r32(x):
    """Rounds to float32 and back: every input is exactly representable in float, so the float and double
    tests see the same inputs and compare against the same float64 references."""
    return x.float().double()


def flat(x):
    return [float(v) for v in x.detach().reshape(-1).tolist()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-upstream", default=None, help="an improved-diffusion checkout to confirm against")
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(20261204)
    cases = {}
    schedules = {"linear1000": np.linspace(1e-4, 0.02, 1000, dtype=np.float64), "cosine100": cosine_betas(100)}
    N, C, H, W = 4, 3, 4, 4
    out_json = {"shape": [N, C, H, W], "schedules": {}, "inputs": {}, "simple": [], "vb": [], "hybrid": [], "prior": []}
    for sname, betas in schedules.items():
        s = Sched(betas)
        out_json["schedules"][sname] = [float(b) for b in betas]
        T = s.T
        t = [0, 1, T // 3, T - 1]
        x0 = torch.randint(0, 256, (N, C, H, W), generator=gen).double() / 127.5 - 1
        x0[0, 0, 0, 0], x0[1, 0, 0, 1] = -1.0, 1.0
        x0 = r32(x0)
        eps = r32(torch.randn((N, C, H, W), generator=gen))
        x_t = r32(s.g(np.sqrt(s.ab), t) * x0 + s.g(np.sqrt(1 - s.ab), t) * eps)
        out_json["inputs"][sname] = {"t": t, "x0": flat(x0), "eps": flat(eps), "x_t": flat(x_t)}
        base = {"schedule": sname}
        out_json["prior"].append({**base, "prior_bpd": flat(
            mean_flat(kl(s.g(np.sqrt(s.ab), [T - 1] * N) * x0, torch.tensor(np.log(1 - s.ab[-1])), torch.zeros(()),
                         torch.zeros(()))) / math.log(2.0))})
        # The simple loss: every kind x weighting.
        for kind in ["epsilon", "sample", "velocity"]:
            target = target_of(s, kind, x0, eps, t)
            output = r32(target + 0.3 * torch.randn((N, C, H, W), generator=gen)).requires_grad_(True)
            for wname, w in [("none", torch.ones(N)), ("min_snr_5", min_snr(s, t, 5.0, kind)),
                             ("p2_1_1", p2(s, t, 1.0, 1.0)), ("p2_1_0.5", p2(s, t, 1.0, 0.5))]:
                output.grad = None
                per = ((target - output) ** 2).mean(dim=(1, 2, 3))
                loss = (w * per).mean()
                loss.backward()
                out_json["simple"].append({**base, "kind": kind, "weighting": wname, "weights": flat(w),
                                           "target": flat(target), "output": flat(output), "loss": float(loss),
                                           "per_sample": flat(per), "grad": flat(output.grad)})
        # The bound's terms.
        for var in ["fixed_small", "fixed_large", "learned_range"]:
            for kind in ["epsilon", "sample", "velocity"]:
                for clip in [False, True]:
                    mean_half = r32(target_of(s, kind, x0, eps, t) + 0.2 * torch.randn((N, C, H, W), generator=gen))
                    if var == "learned_range":
                        out = torch.cat([mean_half, r32(torch.rand((N, C, H, W), generator=gen) * 2 - 1)], dim=1)
                    else:
                        out = mean_half
                    vb = vb_terms(s, var, kind, out, x0, x_t, t, clip)
                    out_json["vb"].append({**base, "variance": var, "kind": kind, "clip": clip,
                                           "output": flat(out), "vb": flat(vb)})
        # The hybrid loss and its gradient (mean half detached in the bound, as improved-diffusion does).
        for kind in ["epsilon", "sample"]:
            for wname in ["none", "importance"]:
                target = target_of(s, kind, x0, eps, t)
                out = r32(torch.cat([target + 0.2 * torch.randn((N, C, H, W), generator=gen),
                                     torch.rand((N, C, H, W), generator=gen) * 2 - 1], dim=1)).requires_grad_(True)
                w = torch.ones(N) if wname == "none" else torch.tensor([0.5, 1.5, 0.9, 1.1])
                mse = mean_flat((target - out[:, :C]) ** 2)
                frozen = torch.cat([out[:, :C].detach(), out[:, C:]], dim=1)
                vb = vb_terms(s, "learned_range", kind, frozen, x0, x_t, t, False) * (T / 1000.0)
                loss = (w * (mse + vb)).mean()
                loss.backward()
                out_json["hybrid"].append({**base, "kind": kind, "weighting": wname, "weights": flat(w),
                                           "target": flat(target), "output": flat(out), "loss": float(loss),
                                           "mse": flat(mse), "vb": flat(vb), "grad": flat(out.grad)})
    if args.check_upstream:
        check_upstream(args.check_upstream, json.loads(json.dumps(out_json)))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out_json, f, separators=(",", ":"))
    print("wrote", os.path.normpath(OUT), os.path.getsize(OUT), "bytes")


def check_upstream(path, fx):
    """Compares the fixtures with improved-diffusion's own GaussianDiffusion (run outside the project)."""
    sys.path.insert(0, path)
    from improved_diffusion import gaussian_diffusion as gd

    # Upstream's _extract_into_tensor casts each coefficient to float32 (`.float()`), which alone moves the
    # terms by ~1e-6 relative; for the comparison it is replaced by the same gather kept in float64.
    def extract64(arr, timesteps, broadcast_shape):
        res = torch.from_numpy(np.asarray(arr, dtype=np.float64))[timesteps]
        while len(res.shape) < len(broadcast_shape):
            res = res[..., None]
        return res.expand(broadcast_shape)

    gd._extract_into_tensor = extract64
    shape = fx["shape"]
    kinds = {"epsilon": gd.ModelMeanType.EPSILON, "sample": gd.ModelMeanType.START_X}
    vars_ = {"fixed_small": gd.ModelVarType.FIXED_SMALL, "fixed_large": gd.ModelVarType.FIXED_LARGE,
             "learned_range": gd.ModelVarType.LEARNED_RANGE}
    worst = 0.0

    def rel(a, b, scale=1.0):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), scale)))

    def T(v, sh=shape):
        return torch.tensor(v).reshape(sh)

    for c in fx["vb"] + fx["prior"] + fx["hybrid"]:
        c.update(fx["inputs"][c["schedule"]])
    for c in fx["vb"]:
        if c["kind"] not in kinds:
            continue
        d = gd.GaussianDiffusion(betas=np.array(fx["schedules"][c["schedule"]]), model_mean_type=kinds[c["kind"]],
                                 model_var_type=vars_[c["variance"]], loss_type=gd.LossType.MSE)
        osh = [shape[0], shape[1] * (2 if c["variance"] == "learned_range" else 1)] + shape[2:]
        out = T(c["output"], osh)
        r = d._vb_terms_bpd(lambda *a: out, T(c["x0"]), T(c["x_t"]), torch.tensor(c["t"]), clip_denoised=c["clip"])
        e = rel(r["output"].numpy(), c["vb"], 1e-3)
        if e > 1e-10: print("vb", c["schedule"], c["variance"], c["kind"], c["clip"], e, r["output"].numpy(), c["vb"])
        worst = max(worst, e)
    for c in fx["prior"]:
        d = gd.GaussianDiffusion(betas=np.array(fx["schedules"][c["schedule"]]), model_mean_type=kinds["epsilon"],
                                 model_var_type=vars_["fixed_small"], loss_type=gd.LossType.MSE)
        worst = max(worst, rel(d._prior_bpd(T(c["x0"])).numpy(), c["prior_bpd"], 1e-3))
    for c in fx["hybrid"]:
        betas = np.array(fx["schedules"][c["schedule"]])
        d = gd.GaussianDiffusion(betas=betas, model_mean_type=kinds[c["kind"]],
                                 model_var_type=gd.ModelVarType.LEARNED_RANGE, loss_type=gd.LossType.RESCALED_MSE)
        out = T(c["output"], [shape[0], 2 * shape[1]] + shape[2:]).requires_grad_(True)
        d.q_sample = lambda *a, x_t=T(c["x_t"]), **k: x_t  # the fixture's x_t is q_sample's, rounded to float
        terms = d.training_losses(lambda *a: out, T(c["x0"]), torch.tensor(c["t"]), noise=T(c["eps"]))
        loss = (torch.tensor(c["weights"]) * terms["loss"]).mean()
        loss.backward()
        worst = max(worst, rel(terms["mse"].detach().numpy(), c["mse"]), rel(terms["vb"].detach().numpy(), c["vb"], 1e-3),
                    rel(float(loss), c["loss"]))
        g = out.grad.numpy().reshape(-1)
        worst = max(worst, rel(g, c["grad"], float(np.max(np.abs(c["grad"])))))
    print(f"improved-diffusion check: largest relative difference {worst:.3g}")
    if worst > 1e-10:
        raise SystemExit("fixtures disagree with improved-diffusion")


if __name__ == "__main__":
    main()
