#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The ddpm authors
"""PyTorch reference for ddpm::nn::UNet2D, and the parity fixtures of tests/nn/unet2d.test.cpp.

A diffusers-UNet2DModel-compatible network written from scratch in plain PyTorch (Debian's python3-torch,
no diffusers needed): the same config.json keys, the same parameter names and the same arithmetic, including
the timestep embedding in float32 (with exp, sin and cos correctly rounded: timestep_embedding below) and the attention softmax in at least float32 (a float64 model keeps its
softmax in float64; diffusers' upcast_softmax would compute it in float32, 1e-7 away). Class conditioning as
UNet2DModel's: num_class_embeds with class_embed_type null is a table class_embedding.weight
[num_class_embeds, time_embed_dim]; "timestep" is an MLP class_embedding.linear_1/linear_2 over the labels'
sinusoidal projection (the timesteps' flip_sin_to_cos and freq_shift); "identity" adds class_labels of shape
[N, time_embed_dim] as they are; the class embedding is added to the output of the time MLP
(emb = time_embedding(t_emb) + class_emb), labels missing or unexpected raise ValueError, as diffusers does.
Unlike diffusers' UNet2DModel, the "timestep" projection is cast to the model's dtype (diffusers feeds its
float32 projection to the class MLP as is, so it fails in a float16/float64 model; UNet2DConditionModel casts).
The config's dropout sits in ResnetBlock2D after norm2 and the activation, before conv2 (nn.Dropout, off in
eval mode); diffusers' attention blocks get none.

It draws random weights, moves every norm and bias away from its default so that each one changes the output,
rounds every weight to a value that bfloat16, float16 and float32 all hold exactly (so one set of reference
outputs serves files of any of the three dtypes), and writes a model directory exactly as diffusers does
(config.json + diffusion_pytorch_model.safetensors) next to the inputs and the outputs of a forward pass in
eval mode (reference_io.safetensors: "sample", "timesteps", "output_f32", "output_f64", and "class_labels"
for a class-conditional model).

    /usr/bin/python3 tests/reference/make_unet_fixture.py [--out tests/data/unet] [--only tiny_class ...]

    /usr/bin/python3 tests/reference/make_unet_fixture.py --convert-bin DIR/diffusion_pytorch_model.bin

converts a PyTorch checkpoint of diffusers (a pickled state_dict) into DIR/diffusion_pytorch_model.safetensors
with the same tensor names (see docs/unet.md); without --convert-bin it writes (each from its own seed)

tests/data/unet/tiny (current attention names, float16 weights, three images at different timesteps),
tests/data/unet/tiny_legacy (the older attention names query/key/value/proj_attn, float32 weights, a
DDPM-style config, one timestep for the batch), tests/data/unet/tiny_class (10 labels in a table,
scale_shift time conditioning, time_embedding_dim 32, one channel, 8x8, attention at the full-resolution
level, float32 weights; labels 7, 0, 7) and tests/data/unet/tiny_identity (class_embed_type "identity": the
inputs include class_labels, a float32 class embedding [2, 32]; 44,969 parameters). All stay small to be
committed. The weights, configs and inputs are reproduced bit for bit, and so are the outputs here (one
thread): every reference_io.safetensors was rewritten when the embedding became correctly rounded, which moved
the float64 outputs by 7e-9 (tiny), 1.6e-7 (tiny_legacy) and 1.2e-8 (tiny_class) of the largest and made them
agree with ddpm's to 2e-15. Rewrite only what you change (--only).
tests/reference/make_unet_grad_fixture.py computes the autograd and AdamW fixtures from these directories
(and confirms them against diffusers' own UNet2DModel). bench/compare_torch_unet.py imports UNet2DModel from
here to time the same architecture.
"""
import argparse
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# The keys of diffusers' UNet2DModel.__init__ with their defaults.
DEFAULT_CONFIG = {
    "sample_size": None,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [224, 448, 672, 896],
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "downsample_padding": 1,
    "downsample_type": "conv",
    "upsample_type": "conv",
    "dropout": 0.0,
    "act_fn": "silu",
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "attn_norm_num_groups": None,
    "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "class_embed_type": None,
    "num_class_embeds": None,
    "num_train_timesteps": None,
}

# google/ddpm-cifar10-32 (the DDPM paper's CIFAR10 network): 35,746,307 parameters in 328 tensors.
CIFAR10_CONFIG = dict(
    DEFAULT_CONFIG,
    sample_size=32,
    block_out_channels=[128, 256, 256, 256],
    down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    layers_per_block=2,
    attention_head_dim=None,
    downsample_padding=0,
    flip_sin_to_cos=False,
    freq_shift=1,
    norm_eps=1e-6,
    norm_num_groups=32,
)


def activation(name):
    if name in ("silu", "swish"):
        return nn.SiLU()
    if name == "mish":
        return nn.Mish()
    if name == "gelu":
        return nn.GELU()
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unsupported act_fn {name}")


def timestep_embedding(timesteps, dim, flip_sin_to_cos, freq_shift):
    """[N] -> [N, dim] in float32, as diffusers computes it, with exp, sin and cos correctly rounded.

    The exponent, t (as float32) and the product t * freq are the float32 operations of diffusers'
    get_timestep_embedding; exp, sin and cos of those float32 values are evaluated in float64 and rounded
    once to float32 (correctly rounded), as ddpm::nn::sinusoidal_embedding_into does. PyTorch's float32
    exp/sin/cos are faithful, not correctly rounded: diffusers' embedding differs from this one by one ulp in
    about 5% of the entries (--check-diffusers in make_unet_grad_fixture.py measures it), while this one is a
    function of t alone, so C++ and PyTorch compute the same bits and a float64 comparison is not limited by
    two libraries' float32 sin."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(0, half, dtype=torch.float32)
    exponent = exponent / (half - freq_shift)
    freqs = torch.exp(exponent.double()).float()
    args = timesteps[:, None].float() * freqs[None, :]
    emb = torch.cat([torch.sin(args.double()), torch.cos(args.double())], dim=-1).float()
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


class TimestepEmbedding(nn.Module):
    def __init__(self, in_dim, dim):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, temb, groups, eps, act, scale, time_norm, dropout=0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, 2 * cout if time_norm == "scale_shift" else cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.dropout = nn.Dropout(dropout)  # the config's "dropout": after norm2 and the activation, before conv2
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.act = activation(act)
        self.scale = scale
        self.time_norm = time_norm

    def forward(self, x, temb):
        h = self.conv1(self.act(self.norm1(x)))
        t = self.time_emb_proj(self.act(temb))[:, :, None, None]
        if self.time_norm == "scale_shift":
            scale, shift = torch.chunk(t, 2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + t)
        h = self.conv2(self.dropout(self.act(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return (x + h) / self.scale


class Attention(nn.Module):
    """Residual self-attention over the pixels; softmax in float32 (diffusers' upcast_softmax)."""

    def __init__(self, channels, head_dim, groups, eps, rescale):
        super().__init__()
        head_dim = channels if head_dim is None else head_dim
        self.heads = channels // head_dim
        self.head_dim = head_dim
        inner = self.heads * head_dim
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps) if groups is not None else None
        self.to_q = nn.Linear(channels, inner)
        self.to_k = nn.Linear(channels, inner)
        self.to_v = nn.Linear(channels, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, channels), nn.Dropout(0.0)])
        self.rescale = rescale

    def forward(self, x):
        b, c, h, w = x.shape
        residual = x
        if self.group_norm is not None:
            x = self.group_norm(x)
        tokens = x.reshape(b, c, h * w).transpose(1, 2)  # [B, HW, C]

        def split(t):
            return t.reshape(b, h * w, self.heads, self.head_dim).transpose(1, 2)  # [B, heads, HW, d]

        q, k, v = split(self.to_q(tokens)), split(self.to_k(tokens)), split(self.to_v(tokens))
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        # at least float32 (diffusers upcasts half precision; a float64 model stays in float64)
        probs = torch.softmax(scores if scores.dtype == torch.float64 else scores.float(), dim=-1).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, h * w, self.heads * self.head_dim)
        out = self.to_out[0](out).transpose(1, 2).reshape(b, c, h, w)
        return (out + residual) / self.rescale


class Downsample2D(nn.Module):
    def __init__(self, channels, padding):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x):
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    def __init__(self, attn, layers, cin, cout, temb, add_down, cfg, head_dim):
        super().__init__()
        r = dict(temb=temb, groups=cfg["norm_num_groups"], eps=cfg["norm_eps"], act=cfg["act_fn"], scale=1.0,
                 time_norm=cfg["resnet_time_scale_shift"], dropout=cfg["dropout"])
        self.resnets = nn.ModuleList([ResnetBlock2D(cin if i == 0 else cout, cout, **r) for i in range(layers)])
        if attn:
            self.attentions = nn.ModuleList(
                [Attention(cout, head_dim, cfg["norm_num_groups"], cfg["norm_eps"], 1.0) for _ in range(layers)])
        else:
            self.attentions = None
        if add_down:
            self.downsamplers = nn.ModuleList([Downsample2D(cout, cfg["downsample_padding"])])
        else:
            self.downsamplers = None

    def forward(self, x, temb):
        states = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x)
            states.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            states.append(x)
        return x, states


class UpBlock(nn.Module):
    def __init__(self, attn, layers, cin, prev, cout, temb, add_up, cfg, head_dim):
        super().__init__()
        r = dict(temb=temb, groups=cfg["norm_num_groups"], eps=cfg["norm_eps"], act=cfg["act_fn"], scale=1.0,
                 time_norm=cfg["resnet_time_scale_shift"], dropout=cfg["dropout"])
        resnets = []
        for i in range(layers):
            skip = cin if i == layers - 1 else cout
            resnets.append(ResnetBlock2D((prev if i == 0 else cout) + skip, cout, **r))
        self.resnets = nn.ModuleList(resnets)
        if attn:
            self.attentions = nn.ModuleList(
                [Attention(cout, head_dim, cfg["norm_num_groups"], cfg["norm_eps"], 1.0) for _ in range(layers)])
        else:
            self.attentions = None
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if add_up else None

    def forward(self, x, skips, temb):
        for i, resnet in enumerate(self.resnets):
            x = torch.cat([x, skips.pop()], dim=1)
            x = resnet(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class MidBlock(nn.Module):
    def __init__(self, channels, temb, cfg, head_dim):
        super().__init__()
        scale = float(cfg["mid_block_scale_factor"])
        r = dict(temb=temb, groups=cfg["norm_num_groups"], eps=cfg["norm_eps"], act=cfg["act_fn"], scale=scale,
                 time_norm=cfg["resnet_time_scale_shift"], dropout=cfg["dropout"])
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, **r) for _ in range(2)])
        attn_groups = cfg["attn_norm_num_groups"]
        if attn_groups is None and cfg["resnet_time_scale_shift"] == "default":
            attn_groups = cfg["norm_num_groups"]
        self.attentions = nn.ModuleList([Attention(channels, head_dim, attn_groups, cfg["norm_eps"], scale)]) \
            if cfg["add_attention"] else None

    def forward(self, x, temb):
        x = self.resnets[0](x, temb)
        if self.attentions is not None:
            x = self.attentions[0](x)
        return self.resnets[1](x, temb)


class UNet2DModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        cfg = dict(DEFAULT_CONFIG, **{k: v for k, v in config.items() if not k.startswith("_")})
        self.cfg = cfg
        ch = cfg["block_out_channels"]
        temb = cfg["time_embedding_dim"] or 4 * ch[0]
        self.conv_in = nn.Conv2d(cfg["in_channels"], ch[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(ch[0], temb)
        # class conditioning, as diffusers' UNet2DModel: a table (class_embed_type null with num_class_embeds), an
        # MLP over the sinusoidal projection of the labels ("timestep"), or the labels themselves ("identity",
        # class_labels of shape [N, time_embed_dim]); num_class_embeds is ignored by the last two
        kind = cfg["class_embed_type"]
        if kind is None and cfg["num_class_embeds"] is not None:
            self.class_embedding = nn.Embedding(cfg["num_class_embeds"], temb)
        elif kind == "timestep":
            self.class_embedding = TimestepEmbedding(ch[0], temb)
        elif kind == "identity":
            self.class_embedding = nn.Identity()
        elif kind is None:
            self.class_embedding = None
        else:
            raise ValueError(f"unsupported class_embed_type {kind}")
        self.down_blocks = nn.ModuleList()
        out = ch[0]
        for i, kind in enumerate(cfg["down_block_types"]):
            cin, out = out, ch[i]
            head = cfg["attention_head_dim"] if cfg["attention_head_dim"] is not None else out
            self.down_blocks.append(DownBlock(kind == "AttnDownBlock2D", cfg["layers_per_block"], cin, out, temb,
                                              i < len(ch) - 1, cfg, head))
        head = cfg["attention_head_dim"] if cfg["attention_head_dim"] is not None else ch[-1]
        self.mid_block = MidBlock(ch[-1], temb, cfg, head)
        self.up_blocks = nn.ModuleList()
        rev = list(reversed(ch))
        out = rev[0]
        for i, kind in enumerate(cfg["up_block_types"]):
            prev, out = out, rev[i]
            cin = rev[min(i + 1, len(ch) - 1)]
            head = cfg["attention_head_dim"] if cfg["attention_head_dim"] is not None else out
            self.up_blocks.append(UpBlock(kind == "AttnUpBlock2D", cfg["layers_per_block"] + 1, cin, prev, out, temb,
                                          i < len(ch) - 1, cfg, head))
        self.conv_norm_out = nn.GroupNorm(cfg["norm_num_groups"], ch[0], eps=cfg["norm_eps"])
        self.conv_out = nn.Conv2d(ch[0], cfg["out_channels"], 3, padding=1)

    def forward(self, x, timesteps, class_labels=None):
        cfg = self.cfg
        if cfg["center_input_sample"]:
            x = 2 * x - 1.0
        t = torch.as_tensor(timesteps).reshape(-1) * torch.ones(x.shape[0], dtype=torch.int64)
        emb = timestep_embedding(t, cfg["block_out_channels"][0], cfg["flip_sin_to_cos"], cfg["freq_shift"])
        emb = self.time_embedding(emb.to(x.dtype))
        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError("UNet2DModel: the model is class-conditional, but no class_labels were given")
            labels = torch.as_tensor(class_labels)
            if cfg["class_embed_type"] == "timestep":
                # the same float32 sinusoids as the timesteps, then the model's dtype (diffusers' UNet2DModel skips
                # this cast, so its "timestep" class embedding only runs in a float32 model)
                labels = timestep_embedding(labels.reshape(-1), cfg["block_out_channels"][0], cfg["flip_sin_to_cos"],
                                            cfg["freq_shift"]).to(x.dtype)
            elif cfg["class_embed_type"] == "identity":
                labels = labels.to(x.dtype)
            emb = emb + self.class_embedding(labels).to(x.dtype)  # added after the time MLP
        elif class_labels is not None:
            raise ValueError("UNet2DModel: class_labels were given, but the model has no class embedding")
        h = self.conv_in(x)
        skips = [h]
        for block in self.down_blocks:
            h, states = block(h, emb)
            skips += states
        h = self.mid_block(h, emb)
        for block in self.up_blocks:
            h = block(h, skips, emb)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


# ----------------------------------------------------------------------------------------------------------
# Weights and files

def representable_weights(model, generator, q_gain=1.5):
    """Random weights with every norm and bias moved off its default, rounded so bf16/f16/f32 hold them."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=generator))
            elif "norm" in name:  # GroupNorm gamma (norm1, norm2, group_norm, conv_norm_out)
                p.copy_(1.0 + 0.25 * torch.randn(p.shape, generator=generator))
            elif name == "class_embedding.weight":  # the table of nn.Embedding: unit normal, as torch initialises it
                p.copy_(torch.randn(p.shape, generator=generator))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(fan_in))
                if ".to_q." in name or ".to_k." in name:
                    p.mul_(q_gain)  # sharper attention, so that errors in the softmax show
            # bfloat16 keeps 8 significant bits; below 2^-14 float16 would lose some, so those become 0
            rounded = p.to(torch.bfloat16).to(torch.float32)
            rounded[rounded.abs() < 2.0 ** -14] = 0.0
            p.copy_(rounded)


def tensor_bytes(t, dtype):
    t = t.detach().contiguous().cpu()
    if dtype == "F32":
        return t.to(torch.float32).numpy().tobytes()
    if dtype == "F64":
        return t.to(torch.float64).numpy().tobytes()
    if dtype == "F16":
        return t.to(torch.float16).numpy().tobytes()
    if dtype == "BF16":
        return t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
    if dtype == "I64":
        return t.to(torch.int64).numpy().tobytes()
    raise ValueError(dtype)


def write_safetensors(path, tensors, dtype_of=lambda name: "F32", metadata=None):
    """The safetensors layout: u64 header size, JSON header (padded with spaces to 8 bytes), raw data."""
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        dtype = dtype_of(name)
        data = tensor_bytes(tensors[name], dtype)
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)


LEGACY_NAMES = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}


def write_model_dir(path, model, config, dtype="F32", legacy_names=False):
    os.makedirs(path, exist_ok=True)
    full = {"_class_name": "UNet2DModel", "_diffusers_version": "0.30.0"}
    full.update(config)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(full, f, indent=2, sort_keys=True)
        f.write("\n")
    state = {}
    for name, p in model.state_dict().items():
        if legacy_names:
            for new, old in LEGACY_NAMES.items():
                name = name.replace(new, old)
        state[name] = p
    write_safetensors(os.path.join(path, "diffusion_pytorch_model.safetensors"), state, lambda _: dtype,
                      {"format": "pt"})


def make_fixture(path, config, batch, size, timesteps, dtype, legacy_names, seed, class_labels=None):
    generator = torch.Generator().manual_seed(seed)
    model = UNet2DModel(config).eval()
    representable_weights(model, generator)
    sample = torch.randn((batch, config["in_channels"], size, size), generator=generator)
    t = torch.tensor(timesteps, dtype=torch.int64)
    labels = None if class_labels is None else torch.tensor(class_labels, dtype=torch.int64)
    if config.get("class_embed_type") == "identity":  # the caller's class embedding [N, time_embed_dim], float32
        temb = config.get("time_embedding_dim") or 4 * config["block_out_channels"][0]
        labels = torch.randn((batch, temb), generator=generator)
    with torch.no_grad():
        out32 = model(sample, t, labels)
        out64 = model.double()(sample.double(), t, labels)
    write_model_dir(path, model, config, dtype, legacy_names)
    io = {"sample": sample, "timesteps": t.to(torch.float64).reshape(-1), "output_f32": out32, "output_f64": out64}
    identity = config.get("class_embed_type") == "identity"
    if labels is not None:  # integers as float64 like the timesteps; an identity model's F32 embedding as drawn
        io["class_labels"] = labels if identity else labels.to(torch.float64)
    float32 = ("sample", "output_f32") + (("class_labels",) if identity else ())
    write_safetensors(os.path.join(path, "reference_io.safetensors"), io,
                      lambda name: "F32" if name in float32 else "F64")
    n = sum(p.numel() for p in model.parameters())
    print(f"{os.path.normpath(path)}: {n} parameters, {len(model.state_dict())} tensors, |out| max {out32.abs().max():.4f}, "
          f"f32 vs f64 {((out32.double() - out64).abs().max() / out64.abs().max()):.2e}")


TINY_CONFIG = dict(
    DEFAULT_CONFIG,
    sample_size=16,
    block_out_channels=[16, 32],
    down_block_types=["DownBlock2D", "AttnDownBlock2D"],
    up_block_types=["AttnUpBlock2D", "UpBlock2D"],
    layers_per_block=1,
    attention_head_dim=8,
    norm_num_groups=8,
    norm_eps=1e-5,
)

# DDPM-style (google/ddpm-cifar10-32's keys): one head, asymmetric downsample padding, freq_shift 1, no flip,
# three levels with attention in the middle one, and a mid-block scale factor that is not 1.
TINY_LEGACY_CONFIG = dict(
    CIFAR10_CONFIG,
    sample_size=16,
    block_out_channels=[8, 16, 16],
    down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    layers_per_block=2,
    norm_num_groups=4,
    mid_block_scale_factor=1.5,
)


# Class-conditional (table of 10 labels added to the time embedding), scale_shift time conditioning, a time
# embedding narrower than 4 * block_out_channels[0], one input and output channel (the digits demo's shape),
# attention at the full-resolution level only; the mid block's attention has no group norm (scale_shift).
TINY_CLASS_CONFIG = dict(
    DEFAULT_CONFIG,
    sample_size=8,
    in_channels=1,
    out_channels=1,
    block_out_channels=[16, 32],
    down_block_types=["AttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "AttnUpBlock2D"],
    layers_per_block=1,
    attention_head_dim=8,
    norm_num_groups=8,
    resnet_time_scale_shift="scale_shift",
    time_embedding_dim=32,
    class_embed_type=None,
    num_class_embeds=10,
)


# class_embed_type "identity": the caller passes the class embedding itself (class_labels [N, time_embed_dim],
# float), added to the time embedding; no class weights. Small (44,969 parameters), the default
# time_embedding_dim (4 x 8 = 32), attention at the second level, one channel, 8x8, two images.
TINY_IDENTITY_CONFIG = dict(
    DEFAULT_CONFIG,
    sample_size=8,
    in_channels=1,
    out_channels=1,
    block_out_channels=[8, 16],
    down_block_types=["DownBlock2D", "AttnDownBlock2D"],
    up_block_types=["AttnUpBlock2D", "UpBlock2D"],
    layers_per_block=1,
    attention_head_dim=8,
    norm_num_groups=4,
    class_embed_type="identity",
)


# Each model directory's own seed: the weights, then the sample, are drawn from it.
FIXTURES = {
    "tiny": dict(config=TINY_CONFIG, batch=3, size=16, timesteps=[0, 417, 999], dtype="F16", legacy_names=False,
                 seed=20260101),
    "tiny_legacy": dict(config=TINY_LEGACY_CONFIG, batch=2, size=16, timesteps=[250], dtype="F32",
                        legacy_names=True, seed=20260102),
    "tiny_class": dict(config=TINY_CLASS_CONFIG, batch=3, size=8, timesteps=[3, 500, 998], dtype="F32",
                       legacy_names=False, seed=20260103, class_labels=[7, 0, 7]),
    "tiny_identity": dict(config=TINY_IDENTITY_CONFIG, batch=2, size=8, timesteps=[20, 900], dtype="F32",
                          legacy_names=False, seed=20260104),
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "data", "unet"))
    p.add_argument("--convert-bin", metavar="BIN", help="write BIN's state_dict as a .safetensors file beside it")
    p.add_argument("--dtype", default="F32", choices=["F32", "F16", "BF16"], help="dtype for --convert-bin")
    p.add_argument("--only", nargs="+", choices=list(FIXTURES), help="write only these model directories")
    args = p.parse_args()
    if args.convert_bin:
        state = torch.load(args.convert_bin, map_location="cpu")
        state = state.get("state_dict", state)
        target = os.path.splitext(args.convert_bin)[0] + ".safetensors"
        write_safetensors(target, {k: v for k, v in state.items() if torch.is_tensor(v)}, lambda _: args.dtype,
                          {"format": "pt"})
        print(f"{target}: {len(state)} tensors")
        return
    torch.set_num_threads(1)
    for name in args.only or FIXTURES:
        make_fixture(os.path.join(args.out, name), **FIXTURES[name])


if __name__ == "__main__":
    main()
