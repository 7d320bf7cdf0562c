#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 The ddpm authors
"""scheduler_config.json round trips, written to tests/data/scheduler_configs/*.json.

Runs diffusers' own scheduler classes from a checkout given by path (nothing of it is committed):

    /usr/bin/python3 tests/reference/make_scheduler_configs.py /work/ext/diffusers

For each case a scheduler class is instantiated with a few options, its save_config writes
scheduler_config.json into a temporary folder, and a class (the same, or another one, as a pipeline does
with `OtherScheduler.from_config(pipe.scheduler.config)`) loads that folder with from_pretrained and runs
set_timesteps(N). Each fixture holds
  - config_text: the file exactly as save_config wrote it (Python's json writes -Infinity for
    lambda_min_clipped, which the C++ reader must accept);
  - load_as: the class that loaded it, num_inference_steps: N;
  - timesteps: the loaded scheduler's timesteps after set_timesteps(N), as diffusers holds them (integers,
    or float32 values, fractional where diffusers interpolates a timestep from a sigma);
  - timesteps_unrounded: for DPMSolverMultistepScheduler with exponential sigmas, which truncates the
    fractional timesteps of its ramp to integers (ddpm rounds, as diffusers' Karras branch does), the values
    before the cast (null otherwise);
  - sigmas: its sigmas (float32 in diffusers), null for DDPM/DDIM; grid_sigmas: the N + 1 noise levels of the
    grid (Heun and KDPM2 repeat each sigma for their two stages: grid_of);
  - loaded: the loaded scheduler's config values of LOADED_KEYS (absent where the class does not take
    the key);
  - alphas_cumprod_at / alphas_cumprod: the loaded scheduler's float32 alphas_cumprod at a few indices
    (the beta schedule the config describes).
The C++ test (tests/io/scheduler_config.test.cpp) reads config_text with ddpm::io::SchedulerConfig, builds
the sampler and compares. The output is deterministic.
"""

import json
import os
import sys
import tempfile

import importlib
import inspect
import types

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_unet_grad_fixture import import_diffusers_unet  # noqa: E402

SCHEDULER_MODULES = {
    "DDPMScheduler": "scheduling_ddpm", "DDIMScheduler": "scheduling_ddim", "PNDMScheduler": "scheduling_pndm",
    "DPMSolverMultistepScheduler": "scheduling_dpmsolver_multistep",
    "EulerDiscreteScheduler": "scheduling_euler_discrete",
    "EulerAncestralDiscreteScheduler": "scheduling_euler_ancestral_discrete",
    "HeunDiscreteScheduler": "scheduling_heun_discrete", "LMSDiscreteScheduler": "scheduling_lms_discrete",
    "KDPM2DiscreteScheduler": "scheduling_k_dpm_2_discrete",
    "KDPM2AncestralDiscreteScheduler": "scheduling_k_dpm_2_ancestral_discrete",
    "DPMSolverSDEScheduler": "scheduling_dpmsolver_sde",
    "UniPCMultistepScheduler": "scheduling_unipc_multistep",
}


DIFFUSERS_VERSION = None


def import_diffusers(path):
    """diffusers' scheduler classes from a checkout, under Debian's packages: make_unet_grad_fixture's importer
    stubs what Debian lacks (huggingface_hub: its argument-checking decorator made the identity, so that
    from_pretrained loads a local folder) and creates the diffusers package bare; the schedulers package is
    created bare too, and the classes are set on the diffusers package (diffusers' from_config looks a config's
    _class_name and a class's compatibles up there)."""
    global DIFFUSERS_VERSION
    hub = {"huggingface_hub.utils": {"validate_hf_hub_args": lambda f: f}}
    DIFFUSERS_VERSION = import_diffusers_unet(path, hub)[2]
    try:
        importlib.import_module("torchsde")
    except ImportError:  # DPMSolverSDEScheduler imports it at module level; set_timesteps does not use it
        sys.modules["torchsde"] = types.ModuleType("torchsde")
    m = types.ModuleType("diffusers.schedulers")
    m.__path__, m.__package__ = [os.path.join(path, "src", "diffusers", "schedulers")], "diffusers.schedulers"
    sys.modules["diffusers.schedulers"] = m
    lib = sys.modules["diffusers"]
    for name, module in SCHEDULER_MODULES.items():
        setattr(lib, name, getattr(importlib.import_module("diffusers.schedulers." + module), name))
    logging = importlib.import_module("diffusers.utils.logging")
    logging.set_verbosity_error()  # from_config's warnings about ignored keys are expected here
    return lib


if len(sys.argv) != 2:
    sys.exit("usage: make_scheduler_configs.py DIFFUSERS_CHECKOUT")
diffusers = import_diffusers(os.path.abspath(sys.argv[1]))

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "scheduler_configs")
N = 10  # linspace with N = 10 places integer timesteps (999 / 9 = 111), where ddpm and diffusers agree exactly

SD = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
SD_LEADING = {**SD, "steps_offset": 1, "timestep_spacing": "leading"}

# (file name, class, constructor options, class that loads the saved config or None for the same)
CASES = []


def case(name, cls, options=None, load_as=None):
    CASES.append((name, cls, options or {}, load_as))


for cls in ["DDPMScheduler", "DDIMScheduler"]:
    short = cls[:4].lower()
    case(short + "_defaults", cls)
    case(short + "_sd", cls, {**SD_LEADING, "clip_sample": False})
    case(short + "_trailing_zero_snr_v", cls,
         {**SD, "timestep_spacing": "trailing", "rescale_betas_zero_snr": True, "prediction_type": "v_prediction"})
    case(short + "_cosine_linspace_threshold", cls,
         {"beta_schedule": "squaredcos_cap_v2", "timestep_spacing": "linspace", "thresholding": True,
          "dynamic_thresholding_ratio": 0.9, "sample_max_value": 2.0, "prediction_type": "sample"})
case("ddpm_fixed_large_clip2", "DDPMScheduler", {"variance_type": "fixed_large", "clip_sample_range": 2.0})
case("ddpm_learned_range_sigmoid", "DDPMScheduler", {"variance_type": "learned_range", "beta_schedule": "sigmoid"})
case("ddim_set_alpha_to_one_false", "DDIMScheduler", {**SD_LEADING, "set_alpha_to_one": False})

case("dpmsolver_defaults", "DPMSolverMultistepScheduler")
case("dpmsolver_sd_karras", "DPMSolverMultistepScheduler", {**SD_LEADING, "use_karras_sigmas": True})
case("dpmsolver_sd_leading", "DPMSolverMultistepScheduler", SD_LEADING)
case("dpmsolver_trailing_zero_snr_v", "DPMSolverMultistepScheduler",
     {**SD, "timestep_spacing": "trailing", "rescale_betas_zero_snr": True, "prediction_type": "v_prediction"})
case("dpmsolver_order1_heun_sigma_min", "DPMSolverMultistepScheduler",
     {"solver_order": 1, "solver_type": "heun", "final_sigmas_type": "sigma_min", "lower_order_final": False})
case("dpmsolver_exponential_threshold", "DPMSolverMultistepScheduler",
     {**SD, "use_exponential_sigmas": True, "thresholding": True})
case("dpmsolver_sde_pp_karras", "DPMSolverMultistepScheduler",
     {**SD, "algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True})
case("dpmsolver_order3_euler_at_final", "DPMSolverMultistepScheduler",
     {"solver_order": 3, "euler_at_final": True, "final_sigmas_type": "sigma_min", "timestep_spacing": "trailing"})
case("dpmsolver_eps_form_sigma_min", "DPMSolverMultistepScheduler",
     {**SD_LEADING, "algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"})
case("dpmsolver_sde_eps_form", "DPMSolverMultistepScheduler",
     {"algorithm_type": "sde-dpmsolver", "final_sigmas_type": "sigma_min", "prediction_type": "v_prediction"})
case("dpmsolver_cosine_heun", "DPMSolverMultistepScheduler",
     {"beta_schedule": "squaredcos_cap_v2", "solver_type": "heun", "prediction_type": "sample"})

for cls, short, ramps, zero_snr in [("EulerDiscreteScheduler", "euler", True, True),
                                    ("EulerAncestralDiscreteScheduler", "euler_a", False, True),
                                    ("HeunDiscreteScheduler", "heun", True, False),
                                    ("LMSDiscreteScheduler", "lms", True, False),
                                    ("KDPM2DiscreteScheduler", "kdpm2", True, False),
                                    ("KDPM2AncestralDiscreteScheduler", "kdpm2_a", True, False)]:
    case(short + "_defaults", cls)
    case(short + "_sd", cls, SD_LEADING)
    trailing = {**SD, "timestep_spacing": "trailing", "prediction_type": "v_prediction"}
    if zero_snr:
        trailing["rescale_betas_zero_snr"] = True
    case(short + "_trailing_v", cls, trailing)
    if ramps:
        case(short + "_sd_karras", cls, {**SD_LEADING, "use_karras_sigmas": True})
        case(short + "_exponential", cls, {**SD, "use_exponential_sigmas": True})
case("pndm_defaults", "PNDMScheduler")
case("pndm_sd", "PNDMScheduler", {**SD_LEADING, "skip_prk_steps": True, "set_alpha_to_one": False})
case("pndm_trailing_v_alpha_one", "PNDMScheduler",
     {**SD, "timestep_spacing": "trailing", "prediction_type": "v_prediction", "set_alpha_to_one": True,
      "skip_prk_steps": True})
case("pndm_linspace_cosine_prk", "PNDMScheduler", {"beta_schedule": "squaredcos_cap_v2", "timestep_spacing": "linspace"})
case("dpmsde_defaults", "DPMSolverSDEScheduler")
case("dpmsde_sd_karras", "DPMSolverSDEScheduler", {**SD_LEADING, "use_karras_sigmas": True, "noise_sampler_seed": 42})
case("dpmsde_exponential_v", "DPMSolverSDEScheduler",
     {**SD, "use_exponential_sigmas": True, "prediction_type": "v_prediction"})
case("dpmsde_trailing", "DPMSolverSDEScheduler", {**SD, "timestep_spacing": "trailing"})
case("unipc_defaults", "UniPCMultistepScheduler")
case("unipc_sd_karras", "UniPCMultistepScheduler", {**SD_LEADING, "use_karras_sigmas": True})
case("unipc_bh1_order3_eps_form", "UniPCMultistepScheduler",
     {**SD, "solver_type": "bh1", "solver_order": 3, "predict_x0": False, "disable_corrector": [0, 2]})
case("unipc_trailing_zero_snr_v", "UniPCMultistepScheduler",
     {**SD, "timestep_spacing": "trailing", "rescale_betas_zero_snr": True, "prediction_type": "v_prediction",
      "final_sigmas_type": "sigma_min", "thresholding": True})
case("unipc_exponential_lower_order_final", "UniPCMultistepScheduler",
     {"use_exponential_sigmas": True, "lower_order_final": False})
case("euler_cosine_sigma_min", "EulerDiscreteScheduler",
     {"beta_schedule": "squaredcos_cap_v2", "final_sigmas_type": "sigma_min", "use_karras_sigmas": True})
case("heun_clip", "HeunDiscreteScheduler", {"clip_sample": True, "clip_sample_range": 1.5})

# Stable Diffusion 1.x's own scheduler_config.json (a PNDMScheduler's, with skip_prk_steps, set_alpha_to_one
# and clip_sample) loaded as other classes, as pipelines swap schedulers: the keys a class does not take are
# ignored by diffusers, and must be by ddpm.
SD_PNDM = {**SD_LEADING, "skip_prk_steps": True, "set_alpha_to_one": False}
for target in ["EulerDiscreteScheduler", "DPMSolverMultistepScheduler", "DDIMScheduler",
               "EulerAncestralDiscreteScheduler", "LMSDiscreteScheduler", "HeunDiscreteScheduler",
               "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "DDPMScheduler", "PNDMScheduler",
               "DPMSolverSDEScheduler", "UniPCMultistepScheduler"]:
    case("sd_pndm_as_" + target.replace("Scheduler", "").lower(), "PNDMScheduler", SD_PNDM, target)
# google/ddpm-cifar10-32's kind of config (DDPMScheduler, fixed_large, clip_sample) loaded as DPM-Solver and
# Euler: DPMSolverMultistepScheduler takes variance_type but acts only on "learned" / "learned_range".
for target in ["DPMSolverMultistepScheduler", "EulerDiscreteScheduler"]:
    case("ddpm_cifar10_as_" + target.replace("Scheduler", "").lower(), "DDPMScheduler",
         {"variance_type": "fixed_large"}, target)
# A DPMSolverMultistepScheduler config (with -Infinity) loaded as Euler, and an Euler config as DDIM.
case("dpmsolver_karras_as_euler", "DPMSolverMultistepScheduler", {**SD, "use_karras_sigmas": True},
     "EulerDiscreteScheduler")
case("euler_trailing_as_ddim", "EulerDiscreteScheduler", {**SD, "timestep_spacing": "trailing"}, "DDIMScheduler")

# The values of the loaded scheduler's config that the C++ test compares with SchedulerConfig's fields (a key
# the loading class does not take is absent: diffusers ignored it).
LOADED_KEYS = ["num_train_timesteps", "beta_schedule", "prediction_type", "timestep_spacing", "steps_offset",
               "rescale_betas_zero_snr", "clip_sample", "clip_sample_range", "thresholding",
               "dynamic_thresholding_ratio", "sample_max_value", "variance_type", "set_alpha_to_one", "solver_order",
               "algorithm_type", "solver_type", "lower_order_final", "use_karras_sigmas", "use_exponential_sigmas",
               "final_sigmas_type", "skip_prk_steps", "predict_x0",
               "euler_at_final", "disable_corrector"]
ALPHA_INDICES = [0, 1, 2, 10, 100, 250, 500, 750, 900, 990, 998, 999]


def floats(a):
    return [float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def grid_of(target, sigmas):
    """The N + 1 noise levels of diffusers' sigmas: Heun holds [s0, s1, s1, ..., s_{N-1}, s_{N-1}, 0], KDPM2 and
    KDPM2 ancestral [s0, s1, s1, ..., s_N, s_N, s_N] (s_N the final 0); the others hold the grid itself."""
    if target in ("HeunDiscreteScheduler", "DPMSolverSDEScheduler"):
        return [sigmas[0]] + sigmas[1:-1:2] + [sigmas[-1]]
    if target in ("KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler"):
        return [sigmas[0]] + sigmas[1:-1:2]
    return sigmas


def run(name, cls_name, options, load_as):
    with tempfile.TemporaryDirectory() as tmp:
        getattr(diffusers, cls_name)(**options).save_config(tmp)
        with open(os.path.join(tmp, "scheduler_config.json"), encoding="utf-8") as f:
            text = f.read()
        target = load_as or cls_name
        sched = getattr(diffusers, target).from_pretrained(tmp)
    sched.set_timesteps(N)
    ts = sched.timesteps.numpy()
    unrounded = None
    if target in ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler") and sched.config.use_exponential_sigmas:
        # DPMSolverMultistepScheduler and UniPCMultistepScheduler cast the exponential ramp's fractional
        # timesteps to int64 (truncation; their Karras branch rounds): the values before the cast, from its own _sigma_to_t, for the C++ test.
        table = np.array(((1 - sched.alphas_cumprod) / sched.alphas_cumprod) ** 0.5)
        log_sigmas = np.log(table)
        unrounded = [float(sched._sigma_to_t(np.float64(v), log_sigmas)) for v in sched.sigmas.numpy()[:-1]]
    timesteps = [int(v) if float(v).is_integer() else float(v) for v in np.asarray(ts, dtype=np.float64)]
    sigmas = None
    if hasattr(sched, "sigmas") and target not in ("DDPMScheduler", "DDIMScheduler", "PNDMScheduler"):
        sigmas = floats(sched.sigmas.numpy())
    ab = sched.alphas_cumprod.numpy()
    # from_config also registers the keys the class ignored ("hidden" config), so keep the class's own keys only.
    takes = inspect.signature(type(sched).__init__).parameters
    loaded = {k: sched.config[k] for k in LOADED_KEYS if k in sched.config and k in takes}
    return {
        "name": name,
        "generator": "tests/reference/make_scheduler_configs.py, diffusers " + DIFFUSERS_VERSION,
        "saved_by": cls_name,
        "options": options,
        "load_as": target,
        "config_text": text,
        "num_inference_steps": N,
        "timesteps": timesteps,
        "timesteps_unrounded": unrounded,
        "sigmas": sigmas,
        "grid_sigmas": grid_of(target, sigmas) if sigmas is not None else None,
        "loaded": loaded,
        "alphas_cumprod_at": ALPHA_INDICES,
        "alphas_cumprod": floats(ab[ALPHA_INDICES]),
    }


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    for old in os.listdir(OUT_DIR):
        if old.endswith(".json"):
            os.remove(os.path.join(OUT_DIR, old))
    for name, cls_name, options, load_as in CASES:
        data = run(name, cls_name, options, load_as)
        with open(os.path.join(OUT_DIR, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
    print(f"wrote {len(CASES)} fixtures to {os.path.normpath(OUT_DIR)}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
