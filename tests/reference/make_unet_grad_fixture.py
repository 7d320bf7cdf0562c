#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The ddpm authors
"""PyTorch-autograd fixtures for the UNet2D backward pass and for ten AdamW steps.

    /usr/bin/python3 tests/reference/make_unet_grad_fixture.py [--data tests/data/unet]

reads the committed model directories (config.json + diffusion_pytorch_model.safetensors, written by
make_unet_fixture.py, whose UNet2DModel it imports) and writes beside them:

reference_grads.safetensors (float64, for tiny, tiny_legacy and tiny_class): the model and the inputs in double
(model.double(), eval mode, so dropout is off), the simple loss L = mean((out - eps)^2) over every element
(F.mse_loss) and loss.backward():
    "sample" [N,C,H,W]          x_t (drawn in float32 and stored as F32, exact; the computation is in float64)
    "timesteps" [N]             one timestep per image, all different (integers as float64)
    "class_labels" [N]          (tiny_class only) distinct labels in 0..9 (integers as float64)
    "eps" [N,C,H,W]             the target noise (drawn in float32 and stored as F32, like "sample")
    "output" [N,C,H,W]          the model's output
    "loss" [1]                  L
    "grad.sample" [N,C,H,W]     dL/dx_t
    "grad.<name>"               dL/dparam for every tensor of the checkpoint, under the checkpoint's own name and
                                shape (tiny_legacy keeps its query/key/value/proj_attn names)
reference_grads_f32.safetensors: the same names with everything computed in float32 (same inputs and weights).

reference_adamw.safetensors (float64, for tiny and tiny_class): from the committed weights, ten steps of
torch.optim.AdamW(lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2; torch 1.13's single-tensor
algorithm: p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
p -= lr/(1-b1^k) * m / (sqrt(v)/sqrt(1-b2^k) + eps)) on the simple loss, each step with its own batch:
    "step_<k>.sample", "step_<k>.timesteps", "step_<k>.eps" (and "step_<k>.class_labels"), k = 0..9
    "loss" [10]                 the loss of step k at the parameters before step k
    "final.<name>"              every parameter after the ten steps (checkpoint names)
The batches are 2 images of 8x8 (sample and eps drawn in float32 and stored as F32; labels drawn with repeats
allowed) to keep each file under 1.5 MB.

Each model's inputs come from their own torch.Generator (seeds below), so the files do not depend on each other.
"""
import argparse
import json
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

from make_unet_fixture import LEGACY_NAMES, UNet2DModel, write_safetensors

DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        data = np.frombuffer(raw[8 + n + begin:8 + n + end], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(data.astype(np.float64) if info["dtype"] != "I64" else data.copy())
    return out


def load_model_dir(path):
    """UNet2DModel (float64) with the directory's weights, and {parameter name: checkpoint name}."""
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    model = UNet2DModel(config).double().eval()
    state = read_safetensors(os.path.join(path, "diffusion_pytorch_model.safetensors"))
    to_file = {}
    for name in model.state_dict():
        file_name = name
        if file_name not in state:
            for new, old in LEGACY_NAMES.items():
                file_name = file_name.replace(new, old)
        to_file[name] = file_name
    model.load_state_dict({name: state[to_file[name]] for name in to_file})
    return model, config, to_file


# drawn in float32 and stored as F32 in every file (float64 holds them exactly; the C++ reader converts)
FLOAT32_DRAWN = ("sample", "eps")


def draw_distinct(high, n, generator):
    while True:
        v = torch.randint(0, high, (n,), generator=generator)
        if len(set(v.tolist())) == n:
            return v


def draw_batch(config, generator, batch, size, distinct_labels=True):
    """x_t and eps in float32, distinct timesteps, labels if the model has a table (distinct if asked)."""
    shape = (batch, config["in_channels"], size, size)
    sample = torch.randn(shape, generator=generator)
    eps = torch.randn(shape, generator=generator)
    t = draw_distinct(1000, batch, generator)
    labels = None
    if config.get("num_class_embeds") is not None and config.get("class_embed_type") is None:
        n = config["num_class_embeds"]
        labels = draw_distinct(n, batch, generator) if distinct_labels else \
            torch.randint(0, n, (batch,), generator=generator)
    return sample, t, labels, eps


def loss_and_grads(model, sample, t, labels, eps):
    model.zero_grad(set_to_none=True)
    x = sample.clone().requires_grad_(True)
    out = model(x, t, labels)
    loss = F.mse_loss(out, eps)
    loss.backward()
    return out.detach(), loss.detach(), x.grad.detach()


def write_grads(path, model, to_file, dtype, sample, t, labels, eps):
    model = model.to(dtype)
    out, loss, grad_x = loss_and_grads(model, sample.to(dtype), t, labels, eps.to(dtype))
    tensors = {"sample": sample, "timesteps": t.double(), "eps": eps, "output": out, "loss": loss.reshape(1),
               "grad.sample": grad_x}
    if labels is not None:
        tensors["class_labels"] = labels.double()
    for name, p in model.named_parameters():
        tensors["grad." + to_file[name]] = p.grad
    tag = "F64" if dtype == torch.float64 else "F32"
    write_safetensors(path, tensors, lambda name: "F32" if name in FLOAT32_DRAWN else tag)
    largest = max(p.grad.abs().max().item() for p in model.parameters())
    print(f"{os.path.normpath(path)}: loss {loss.item():.6f}, largest |grad| {largest:.4f}, "
          f"{os.path.getsize(path)} bytes")
    return tensors


def write_adamw(path, model, to_file, config, generator, steps=10, batch=2, size=8):
    model = model.double()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                            foreach=False)
    tensors, losses = {}, []
    for k in range(steps):
        sample, t, labels, eps = draw_batch(config, generator, batch, size, distinct_labels=False)
        tensors[f"step_{k}.sample"] = sample
        tensors[f"step_{k}.timesteps"] = t.double()
        tensors[f"step_{k}.eps"] = eps
        if labels is not None:
            tensors[f"step_{k}.class_labels"] = labels.double()
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(sample.double(), t, labels), eps.double())
        loss.backward()
        opt.step()
        losses.append(loss.item())
    tensors["loss"] = torch.tensor(losses, dtype=torch.float64)
    for name, p in model.named_parameters():
        tensors["final." + to_file[name]] = p.detach()
    write_safetensors(path, tensors, lambda name: "F32" if name.split(".")[-1] in FLOAT32_DRAWN else "F64")
    print(f"{os.path.normpath(path)}: losses {' '.join(f'{v:.5f}' for v in losses)}, {os.path.getsize(path)} bytes")


# model directory: (seed, batch, image size, AdamW fixture?)
CASES = {
    "tiny": (20261101, 3, 16, True),
    "tiny_legacy": (20261102, 3, 16, False),
    "tiny_class": (20261103, 3, 8, True),
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "data", "unet"))
    p.add_argument("--only", nargs="+", choices=list(CASES))
    args = p.parse_args()
    torch.set_num_threads(1)
    for name in args.only or CASES:
        seed, batch, size, adamw = CASES[name]
        path = os.path.join(args.data, name)
        generator = torch.Generator().manual_seed(seed)
        model, config, to_file = load_model_dir(path)
        sample, t, labels, eps = draw_batch(config, generator, batch, size)
        write_grads(os.path.join(path, "reference_grads.safetensors"), model, to_file, torch.float64,
                    sample, t, labels, eps)
        write_grads(os.path.join(path, "reference_grads_f32.safetensors"), load_model_dir(path)[0], to_file,
                    torch.float32, sample, t, labels, eps)
        if adamw:
            write_adamw(os.path.join(path, "reference_adamw.safetensors"), load_model_dir(path)[0], to_file,
                        config, generator)


if __name__ == "__main__":
    main()
