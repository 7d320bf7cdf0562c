#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The ddpm authors
"""PyTorch reference of the examples/train_digits recipe (kept for the record; writes no fixture).

Trains the class-conditional UNet2DModel of tests/reference/make_unet_fixture.py on the 1797 8x8 UCI digits
(scripts/get-digits.sh prints the file: 64 grey levels 0..16 then the label per row; scaled to [-1, 1]) with
the simple eps loss, and measures, at a few step counts, how many class-conditional samples a k-NN classifier
assigns to the class they were asked for. It was used to choose the recipe of docs/training.md and
/work/frag/torchtrain_recipe.md; run it as

    /usr/bin/python3 tests/reference/train_digits_reference.py --steps 2000 --eval-at 500,1000,2000 \
        [--size 8|16 --upsample nearest|bilinear --channels 32,64 --no-attention --batch 64 --lr 2e-3 \
         --schedule linear|cosine --cfg 1,2,3,4 --sampler dpmpp,ddim --per-class 30 --threads 1]

Recipe pieces (each a flag):
- Model: UNet2DModel, in/out 1 channel, layers_per_block 1, norm_num_groups 8, attention_head_dim 8, down
  blocks DownBlock2D + AttnDownBlock2D (attention at the half resolution; the mid block's attention too), up
  blocks AttnUpBlock2D + UpBlock2D; --no-attention uses plain blocks and add_attention false. Class
  conditioning as diffusers users do it with class_embed_type null: num_class_embeds 11, an nn.Embedding table
  added to the time embedding, index 10 the null class. Label dropout: each training label becomes 10 with
  probability --label-dropout (0.1).
- Training: t uniform in 0..T-1, eps ~ N(0, I), x_t = sqrt(ab) x0 + sqrt(1 - ab) eps, loss F.mse_loss(model, eps);
  AdamW (lr --lr, betas (0.95, 0.999), weight decay 1e-6, eps 1e-8, diffusers' train_unconditional values), a
  linear warm-up of --warmup steps then constant; clip_grad_norm_ 1.0; EMA with diffusers' EMAModel warm-up decay
  (inv_gamma 1, power 3/4, min 0, max --ema-max 0.999), updated after each step.
- Sampling from the EMA weights: classifier-free guidance eps_u + s (eps_c - eps_u) (conditional and null rows
  in one batch); DDIM (eta 0, diffusers' "leading" spacing, 50 steps, x0 clipped to [-1, 1], final alpha_bar 1)
  or DPM-Solver++(2M) (diffusers' defaults: 20 steps, "linspace" spacing, first order at the first and last
  step, final sigma 0), samples clipped to [-1, 1]. 16x16 samples are averaged 2x2 back to 8x8 for scoring.
- Score: k-NN (k = --knn, Euclidean on the 0..16 pixels) fitted on a fixed 80/20 split (seed 0) of the real
  digits; its held-out accuracy is printed; "classified" is the fraction of samples whose k-NN label is the
  requested class. "nn-ratio" is the median, over samples, of the distance to the nearest of the 1797 training
  images divided by the median pairwise distance between real digits; the same ratio for the held-out real
  digits (against the training split) is printed for scale (copies would give 0).
"""
import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="digits.csv.gz (default: the path scripts/get-digits.sh prints)")
    p.add_argument("--size", type=int, default=8, choices=(8, 16))
    p.add_argument("--upsample", default="nearest", choices=("nearest", "bilinear"))
    p.add_argument("--channels", default="32,64")
    p.add_argument("--no-attention", action="store_true")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema-max", type=float, default=0.999)
    p.add_argument("--schedule", default="linear", choices=("linear", "cosine"))
    p.add_argument("--T", type=int, default=1000)
    p.add_argument("--label-dropout", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--eval-at", default="500,1000,2000")
    p.add_argument("--cfg", default="1,2,3")
    p.add_argument("--sampler", default="dpmpp", help="dpmpp (20 steps), ddim (50 steps) or both: dpmpp,ddim")
    p.add_argument("--per-class", type=int, default=30)
    p.add_argument("--knn", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid", default=None, help="write a PNG grid of the samples of each evaluation: PREFIX_step_cfg_sampler.png")
    p.add_argument("--json", default=None, help="append the results as one JSON line to this file")
    p.add_argument("--default-malloc", action="store_true")
    return p.parse_args()


def load_digits(path, np):
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",")
    return rows[:, :64].astype(np.float32), rows[:, 64].astype(np.int64)


class KNN:
    def __init__(self, x, y, k):
        self.x, self.y, self.k = x, y, k

    def predict(self, np, q):
        d = ((q[:, None, :] - self.x[None, :, :]) ** 2).sum(-1)
        idx = np.argsort(d, axis=1)[:, :self.k]
        votes = self.y[idx]
        out = []
        for row, drow in zip(votes, np.take_along_axis(d, idx, 1)):
            counts = np.bincount(row, minlength=10)
            best = np.flatnonzero(counts == counts.max())
            # ties: the class of the nearest neighbour among the tied ones
            out.append(next(c for c in row if c in best))
        return np.array(out)


def make_schedule(torch, kind, T):
    if kind == "linear":
        betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    else:
        f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = torch.tensor([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)], dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)


def model_config(args):
    ch = [int(c) for c in args.channels.split(",")]
    attn = not args.no_attention
    return {
        "sample_size": args.size, "in_channels": 1, "out_channels": 1, "block_out_channels": ch,
        "layers_per_block": 1, "norm_num_groups": 8, "attention_head_dim": 8,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D" if attn else "DownBlock2D"],
        "up_block_types": ["AttnUpBlock2D" if attn else "UpBlock2D", "UpBlock2D"],
        "add_attention": attn, "num_class_embeds": 11, "class_embed_type": None,
    }


def ema_decay(step, max_decay, inv_gamma=1.0, power=0.75):
    s = step - 1  # diffusers' EMAModel: update_after_step 0, optimization_step counts from 1
    if s <= 0:
        return 0.0
    return min(max(1 - (1 + s / inv_gamma) ** -power, 0.0), max_decay)


def guided_eps(torch, model, x, t, labels, scale):
    n = x.shape[0]
    null = torch.full_like(labels, 10)
    if scale == 1.0:
        return model(x, torch.full((n,), int(t), dtype=torch.int64), labels)
    out = model(torch.cat([x, x]), torch.full((2 * n,), int(t), dtype=torch.int64), torch.cat([labels, null]))
    cond, uncond = out[:n], out[n:]
    return uncond + scale * (cond - uncond)


def sample_ddim(torch, model, ab, labels, scale, size, steps, gen):
    T = ab.shape[0]
    ratio = T // steps
    ts = [i * ratio for i in range(steps)][::-1]
    x = torch.randn(labels.shape[0], 1, size, size, generator=gen)
    for t in ts:
        prev = t - ratio
        a_t = float(ab[t])
        a_p = float(ab[prev]) if prev >= 0 else 1.0
        eps = guided_eps(torch, model, x, t, labels, scale)
        x0 = ((x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)).clamp(-1, 1)
        eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        x = math.sqrt(a_p) * x0 + math.sqrt(1 - a_p) * eps
    return x.clamp(-1, 1)


def sample_dpmpp(torch, model, ab, labels, scale, size, steps, gen):
    import numpy as np
    T = ab.shape[0]
    ts = np.linspace(0, T - 1, steps + 1).round()[::-1][:-1].astype(np.int64)
    alpha = lambda t: math.sqrt(float(ab[t]))
    sigma = lambda t: math.sqrt(1 - float(ab[t]))
    x = torch.randn(labels.shape[0], 1, size, size, generator=gen)
    prev_x0, h_prev = None, None
    for i, t in enumerate(ts):
        eps = guided_eps(torch, model, x, t, labels, scale)
        x0 = (x - sigma(t) * eps) / alpha(t)
        if i == len(ts) - 1:  # final sigma 0: the last step is x0 itself (first order)
            x = x0
            break
        s_next = ts[i + 1]
        lam_s = math.log(alpha(t) / sigma(t))
        lam_t = math.log(alpha(s_next) / sigma(s_next))
        h = lam_t - lam_s
        if prev_x0 is None:
            d = x0
        else:
            r = h_prev / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * prev_x0
        x = (sigma(s_next) / sigma(t)) * x - alpha(s_next) * math.expm1(-h) * d
        prev_x0, h_prev = x0, h
    return x.clamp(-1, 1)


def save_grid(np, images, path, zoom=4):
    """[rows, cols, 8, 8] grey levels 0..16 -> a PNG (PIL), black digits on white as the UCI scans."""
    from PIL import Image
    rows, cols = images.shape[:2]
    canvas = np.full((rows * 9 + 1, cols * 9 + 1), 8.0, dtype=np.float32)  # grey frame
    for i in range(rows):
        for j in range(cols):
            canvas[1 + 9 * i:9 + 9 * i, 1 + 9 * j:9 + 9 * j] = images[i, j]
    pixels = (255 - np.clip(canvas, 0, 16) * (255 / 16)).astype(np.uint8)
    Image.fromarray(pixels).resize((canvas.shape[1] * zoom, canvas.shape[0] * zoom), Image.NEAREST).save(path)


def main():
    args = parse_args()
    if not args.default_malloc and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:],
                  dict(os.environ, **MALLOC_ENV))
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import numpy as np
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, HERE)
    from make_unet_fixture import UNet2DModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    path = args.data or subprocess.run([os.path.join(HERE, "..", "..", "scripts", "get-digits.sh")],
                                       check=True, capture_output=True, text=True).stdout.strip()
    pix, labels = load_digits(path, np)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(pix))
    cut = int(0.8 * len(pix))
    tr, te = perm[:cut], perm[cut:]
    knn = KNN(pix[tr], labels[tr], args.knn)
    knn_acc = float((knn.predict(np, pix[te]) == labels[te]).mean())
    pd = np.sqrt(((pix[:, None, :] - pix[None, :, :]) ** 2).sum(-1))
    median_pair = float(np.median(pd[np.triu_indices(len(pix), 1)]))
    d_te = np.sqrt(((pix[te][:, None, :] - pix[tr][None, :, :]) ** 2).sum(-1)).min(1)
    real_ratio = float(np.median(d_te) / median_pair)
    print(f"k-NN (k={args.knn}) held-out accuracy {knn_acc:.3f}; median pairwise distance {median_pair:.2f}; "
          f"held-out real digits' nearest-training ratio {real_ratio:.3f}", flush=True)

    x_all = torch.from_numpy(pix / 8.0 - 1.0).reshape(-1, 1, 8, 8)
    if args.size == 16:
        x_all = F.interpolate(x_all, scale_factor=2, mode=args.upsample,
                              **({} if args.upsample == "nearest" else {"align_corners": False}))
    y_all = torch.from_numpy(labels)
    cfg = model_config(args)
    model = UNet2DModel(cfg)
    ema = UNet2DModel(cfg)
    ema.load_state_dict(model.state_dict())
    ema.eval()
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, args.warmup)))
    ab = make_schedule(torch, args.schedule, args.T)
    ab32 = ab.float()
    evals = sorted(int(s) for s in args.eval_at.split(",") if s)
    scales = [float(s) for s in args.cfg.split(",")]
    samplers = args.sampler.split(",")
    gen = torch.Generator().manual_seed(args.seed + 1)
    print(f"config {json.dumps(cfg)}; {n_params} parameters; {vars(args)}", flush=True)
    results = []
    train_time, train_cpu, losses = 0.0, 0.0, []
    for step in range(1, args.steps + 1):
        start, start_cpu = time.perf_counter(), time.process_time()
        idx = torch.randint(0, x_all.shape[0], (args.batch,), generator=gen)
        x0, y = x_all[idx], y_all[idx].clone()
        y[torch.rand(args.batch, generator=gen) < args.label_dropout] = 10
        t = torch.randint(0, args.T, (args.batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        a = ab32[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        loss = F.mse_loss(model(xt, t, y), eps)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        d = ema_decay(step, args.ema_max)
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.sub_((1 - d) * (pe - pm))
        train_time += time.perf_counter() - start
        train_cpu += time.process_time() - start_cpu
        losses.append(float(loss))
        if step % 100 == 0:
            print(f"step {step} loss(100) {np.mean(losses[-100:]):.4f} {train_time / step * 1e3:.1f} ms/step "
                  f"({train_cpu / step * 1e3:.1f} ms CPU)",
                  flush=True)
        if step in evals:
            want = torch.arange(10).repeat_interleave(args.per_class)
            for s, name in [(s, n) for n in samplers for s in scales]:
                t0 = time.perf_counter()
                fn, steps_s = (sample_dpmpp, 20) if name == "dpmpp" else (sample_ddim, 50)
                with torch.no_grad():
                    out = fn(torch, ema, ab, want, s, args.size, steps_s, torch.Generator().manual_seed(1234))
                if args.size == 16:
                    out = F.avg_pool2d(out, 2)
                q = ((out.reshape(-1, 64).numpy() + 1.0) * 8.0).astype(np.float32)
                pred = knn.predict(np, q)
                frac = float((pred == want.numpy()).mean())
                nd = np.sqrt(((q[:, None, :] - pix[None, :, :]) ** 2).sum(-1)).min(1)
                ratio = float(np.median(nd) / median_pair)
                r = dict(step=step, train_s=round(train_time, 1), ms_per_step=round(train_time / step * 1e3, 1),
                         cpu_ms_per_step=round(train_cpu / step * 1e3, 1),
                         cfg=s, sampler=f"{name}{steps_s}", classified=frac, nn_ratio=round(ratio, 3),
                         nn_min=round(float(nd.min() / median_pair), 3), sample_s=round(time.perf_counter() - t0, 1),
                         loss=round(float(np.mean(losses[-200:])), 4))
                results.append(r)
                if args.grid:
                    save_grid(np, q.reshape(10, args.per_class, 8, 8)[:, :10],
                              f"{args.grid}_{step}_{s:g}_{name}.png")
                print("EVAL " + json.dumps(r), flush=True)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(dict(args=vars(args), params=n_params, knn_acc=knn_acc, real_ratio=real_ratio,
                                    results=results)) + "\n")


if __name__ == "__main__":
    main()
