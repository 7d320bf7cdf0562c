#!/usr/bin/python3
"""Side-by-side timing of one sampler step: ddpm's samplers against the same step math in PyTorch.

Needs Debian's python3-torch, which installs for Debian's own interpreter: run it as
    /usr/bin/python3 bench/compare_torch_samplers.py --bench build/h-benchs/bench/bench_samplers [--threads 1]

The PyTorch side performs, per step, the tensor operations of the diffusers schedulers' `step` (v0.2x, no
clipping, epsilon prediction) on a 1000-step run of the linear schedule, at a middle step, with the scheduler
state held as diffusers holds it (alphas_cumprod / sigmas as float32 tensors, DDPM/DDIM timesteps as 0-d
tensors, the Euler samplers' scale_model_input included since ddpm's Euler steps fold it in):
    DDPM            x0 = (x - sqrt(1-a) eps) / sqrt(a); mean = c0 x0 + ct x; + sqrt(var) * randn
    DDIM eta=0, 1   x0 as above; x' = sqrt(a') x0 + sqrt(1-a'-s^2) eps (+ s * randn)
    DPM-Solver++2M  x0 = (x - sigma_t eps) / alpha_t; lambdas, h, r0; x' = (s_t/s_s0) x - a_t (e^-h - 1)(D0 + D1/2)
    Euler           x / sqrt(sigma^2 + 1); x0 = x - sigma eps; d = (x - x0) / sigma; x + d dt
    Euler ancestral as Euler with sigma_up / sigma_down, + randn * sigma_up
    Heun, DPM2,     HeunDiscreteScheduler / KDPM2(Ancestral)DiscreteScheduler.step, their first and second
    DPM2 ancestral  stages alternating from call to call (ddpm's two-stage samplers alternate too)
    LMS             LMSDiscreteScheduler.step at order 4: x0, the derivative, sum of 4 coefficient x derivative
                    (the coefficients given: diffusers integrates them with scipy on every step, not timed)
    PLMS            PNDMScheduler.step_plms (skip_prk_steps) with four outputs: the Adams-Bashforth sum, then
                    _get_prev_sample's transfer (Eq. (9) of the PNDM paper)
    DPM++ 2S a      k-diffusion's sample_dpmpp_2s_ancestral, stages alternating (no diffusers scheduler)
    UniPC           UniPCMultistepScheduler.step at its defaults (bh2, order 2, predict_x0): convert_model_output,
                    the corrector multistep_uni_c_bh_update (torch.linalg.solve of its 2 x 2 system) and the
                    predictor multistep_uni_p_bh_update
    DPM++ SDE       k-diffusion's sample_dpmpp_sde (r = 1/2, eta = 1), stages alternating, its noise_sampler's
                    normalized Brownian increment given as a tensor (torchsde's tree not timed; ddpm's row
                    BM_DPMPPSDE_Step takes the increment as a tensor too)
    DPM-Solver++3M  DPMSolverMultistepScheduler's convert_model_output and multistep_dpm_solver_third_order_update
    DPM++ 2M SDE    the same with algorithm_type sde-dpmsolver++, second order, midpoint, + randn noise
    DPM++ 3M SDE    k-diffusion's sample_dpmpp_3m_sde loop body, its noise from torch.randn (its default
                    Brownian-tree noise sampler costs far more; ddpm draws independent normals)
under torch.no_grad, each timed as the best mean over batches of calls. It then runs the ddpm binary with
--benchmark_format=json and --benchmark_repetitions (the best repetition counts) and prints Markdown tables:
per shape and sampler the two times and their ratio (PyTorch / ddpm), and the per-step overhead of
ddpm::sample() with a model that costs nothing.

Memory: a PyTorch step allocates a fresh tensor per operation; with glibc's default settings tensors of
these sizes come from mmap and are returned to the system when freed, so every operation page-faults its
result in, which slows PyTorch's steps 5-8x on the larger shapes. To compare against PyTorch at its best,
the script re-executes itself with MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ raised (both sides run
under them; ddpm's in-place steps do not allocate); --default-malloc keeps glibc's defaults.

Clock: with one thread both sides are timed in CPU time of the process (PyTorch's time.process_time, Google
Benchmark's cpu_time), so that a machine shared with other jobs, which hands this process only part of a
core, slows neither side's numbers; with more threads, in wall-clock time (--clock wall).
"""
import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = [(1, 3, 8, 8), (16, 3, 64, 64), (4, 4, 128, 128)]
# benchmark name in bench_samplers -> label
SAMPLERS = [
    ("BM_DDPM_Step", "DDPM"),
    ("BM_DDIM_Eta0_Step", "DDIM eta=0"),
    ("BM_DDIM_Eta1_Step", "DDIM eta=1"),
    ("BM_DPMSolver2M_Step", "DPM-Solver++ 2M"),
    ("BM_Euler_Step", "Euler"),
    ("BM_EulerAncestral_Step", "Euler ancestral"),
    ("BM_Heun_Step", "Heun"),
    ("BM_LMS_Step", "LMS (order 4)"),
    ("BM_PLMS_Step", "PLMS (PNDM)"),
    ("BM_UniPC_Step", "UniPC (bh2, order 2)"),
    ("BM_DPM2_Step", "DPM2"),
    ("BM_DPM2Ancestral_Step", "DPM2 ancestral"),
    ("BM_DPMPP2SAncestral_Step", "DPM++ 2S ancestral"),
    ("BM_DPMPPSDE_Step", "DPM++ SDE (given increments)"),
    ("BM_DPMSolver3M_Step", "DPM-Solver++ 3M"),
    ("BM_DPMPP2MSDE_Step", "DPM++ 2M SDE"),
    ("BM_DPMPP3MSDE_Step", "DPM++ 3M SDE"),
]
T = 1000          # training timesteps
N = 1000          # steps of the run (as in bench_samplers)
MIDDLE = 500      # the step index timed on the PyTorch side
LOOP_STEPS = 50   # kLoopSteps of bench_samplers.cpp


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", default="build/release/bench/bench_samplers", help="path of the bench_samplers binary")
    p.add_argument("--threads", type=int, default=1,
                   help="threads for both sides (default 1; ddpm uses more only when built with DDPM_OPENMP)")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds per measurement")
    p.add_argument("--repetitions", type=int, default=3, help="repetitions of each ddpm benchmark (best counts)")
    p.add_argument("--default-malloc", action="store_true",
                   help="keep glibc's default mmap/trim thresholds (PyTorch then page-faults every result in)")
    p.add_argument("--clock", choices=["cpu", "wall"], default=None,
                   help="cpu (process CPU time; the default for one thread) or wall (the default for more)")
    args = p.parse_args()
    if args.clock is None:
        args.clock = "cpu" if args.threads == 1 else "wall"
    return args


def time_torch(fn, min_time, clock):
    """Best mean time per call over repeated batches of calls (PyTorch at its best)."""
    fn()
    calls = 1
    while True:
        start = clock()
        for _ in range(calls):
            fn()
        if clock() - start > 0.05:
            break
        calls *= 4
    best = float("inf")
    deadline = time.perf_counter() + min_time
    while time.perf_counter() < deadline:
        start = clock()
        for _ in range(calls):
            fn()
        best = min(best, (clock() - start) / calls)
    return best


def make_steps(torch):
    """The diffusers step math, one closure factory per sampler: factory(eps, x) -> step() returning x'."""
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float32)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    one = torch.tensor(1.0)
    # diffusers' DDPM/DDIM timesteps for N = T, leading spacing: T-1, ..., 0 (an int64 tensor)
    timesteps = torch.arange(0, N).flip(0) * (T // N)
    t = timesteps[MIDDLE]  # a 0-d tensor, as the pipeline's `for t in scheduler.timesteps` gives
    # Euler / DPM-Solver++ sigmas: sqrt((1 - a) / a) at linspace timesteps, then a final 0 (float32 tensor)
    sig_all = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5

    def ddpm(eps, x):
        def previous_timestep(ts):
            return ts - T // N

        def get_variance(ts):
            prev_t = previous_timestep(ts)
            alpha_prod_t = alphas_cumprod[ts]
            alpha_prod_t_prev = alphas_cumprod[prev_t] if prev_t >= 0 else one
            current_beta_t = 1 - alpha_prod_t / alpha_prod_t_prev
            variance = (1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * current_beta_t
            return torch.clamp(variance, min=1e-20)

        def step():
            prev_t = previous_timestep(t)
            alpha_prod_t = alphas_cumprod[t]
            alpha_prod_t_prev = alphas_cumprod[prev_t] if prev_t >= 0 else one
            beta_prod_t = 1 - alpha_prod_t
            beta_prod_t_prev = 1 - alpha_prod_t_prev
            current_alpha_t = alpha_prod_t / alpha_prod_t_prev
            current_beta_t = 1 - current_alpha_t
            pred_original_sample = (x - beta_prod_t ** 0.5 * eps) / alpha_prod_t ** 0.5
            pred_original_sample_coeff = (alpha_prod_t_prev ** 0.5 * current_beta_t) / beta_prod_t
            current_sample_coeff = current_alpha_t ** 0.5 * beta_prod_t_prev / beta_prod_t
            pred_prev_sample = pred_original_sample_coeff * pred_original_sample + current_sample_coeff * x
            if t > 0:
                variance_noise = torch.randn(eps.shape, dtype=eps.dtype)
                variance = (get_variance(t) ** 0.5) * variance_noise
                pred_prev_sample = pred_prev_sample + variance
            return pred_prev_sample
        return step

    def ddim(eta):
        final_alpha_cumprod = one  # set_alpha_to_one

        def factory(eps, x):
            def step():
                prev_timestep = t - T // N
                alpha_prod_t = alphas_cumprod[t]
                alpha_prod_t_prev = alphas_cumprod[prev_timestep] if prev_timestep >= 0 else final_alpha_cumprod
                beta_prod_t = 1 - alpha_prod_t
                pred_original_sample = (x - beta_prod_t ** 0.5 * eps) / alpha_prod_t ** 0.5
                pred_epsilon = eps
                beta_prod_t_prev = 1 - alpha_prod_t_prev
                variance = (beta_prod_t_prev / beta_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)
                std_dev_t = eta * variance ** 0.5
                pred_sample_direction = (1 - alpha_prod_t_prev - std_dev_t ** 2) ** 0.5 * pred_epsilon
                prev_sample = alpha_prod_t_prev ** 0.5 * pred_original_sample + pred_sample_direction
                if eta > 0:
                    variance_noise = torch.randn(eps.shape, dtype=eps.dtype)
                    prev_sample = prev_sample + std_dev_t * variance_noise
                return prev_sample
            return step
        return factory

    # N = T: every timestep, 999 .. 0, then the final sigma 0
    sigmas = torch.cat([sig_all.flip(0), torch.zeros(1)])

    def sigma_to_alpha_sigma_t(sigma):
        alpha_t = 1 / ((sigma ** 2 + 1) ** 0.5)
        return alpha_t, sigma * alpha_t

    def dpm_solver(eps, x):
        # the previous step's x0 (the history), as after step MIDDLE - 1
        model_outputs = [None, (x - sig_all[T - MIDDLE] * eps) * 0.5]

        def step():
            step_index = MIDDLE
            # convert_model_output (dpmsolver++, epsilon)
            sigma = sigmas[step_index]
            alpha_t, sigma_t = sigma_to_alpha_sigma_t(sigma)
            x0_pred = (x - sigma_t * eps) / alpha_t
            outputs = [model_outputs[1], x0_pred]   # model_outputs shifted, the new one appended
            # multistep_dpm_solver_second_order_update (midpoint)
            sigma_t, sigma_s0, sigma_s1 = sigmas[step_index + 1], sigmas[step_index], sigmas[step_index - 1]
            alpha_t, sigma_t = sigma_to_alpha_sigma_t(sigma_t)
            alpha_s0, sigma_s0 = sigma_to_alpha_sigma_t(sigma_s0)
            alpha_s1, sigma_s1 = sigma_to_alpha_sigma_t(sigma_s1)
            lambda_t = torch.log(alpha_t) - torch.log(sigma_t)
            lambda_s0 = torch.log(alpha_s0) - torch.log(sigma_s0)
            lambda_s1 = torch.log(alpha_s1) - torch.log(sigma_s1)
            m0, m1 = outputs[-1], outputs[-2]
            h, h_0 = lambda_t - lambda_s0, lambda_s0 - lambda_s1
            r0 = h_0 / h
            D0, D1 = m0, (1.0 / r0) * (m0 - m1)
            x_t = ((sigma_t / sigma_s0) * x - (alpha_t * (torch.exp(-h) - 1.0)) * D0
                   - 0.5 * (alpha_t * (torch.exp(-h) - 1.0)) * D1)
            return x_t
        return step

    def dpm_lambdas(step_index, back):
        # (alpha_t, sigma_t) of the next sigma and (alpha, sigma, lambda) of the current and `back` previous ones
        alpha_t, sigma_t = sigma_to_alpha_sigma_t(sigmas[step_index + 1])
        lambda_t = torch.log(alpha_t) - torch.log(sigma_t)
        rest = []
        for k in range(back + 1):
            a, s = sigma_to_alpha_sigma_t(sigmas[step_index - k])
            rest.append((a, s, torch.log(a) - torch.log(s)))
        return alpha_t, sigma_t, lambda_t, rest

    def dpm_solver_3m(eps, x):
        # the two previous steps' x0 (the history), as after step MIDDLE - 1
        model_outputs = [None, (x - sig_all[T - MIDDLE] * eps) * 0.5, (x - sig_all[T - MIDDLE] * eps) * 0.7]

        def step():
            step_index = MIDDLE
            alpha_s, sigma_s = sigma_to_alpha_sigma_t(sigmas[step_index])
            x0_pred = (x - sigma_s * eps) / alpha_s
            outputs = [model_outputs[1], model_outputs[2], x0_pred]
            alpha_t, sigma_t, lambda_t, rest = dpm_lambdas(step_index, 2)
            (_, sigma_s0, lambda_s0), (_, _, lambda_s1), (_, _, lambda_s2) = rest
            m0, m1, m2 = outputs[-1], outputs[-2], outputs[-3]
            h, h_0, h_1 = lambda_t - lambda_s0, lambda_s0 - lambda_s1, lambda_s1 - lambda_s2
            r0, r1 = h_0 / h, h_1 / h
            D0 = m0
            D1_0, D1_1 = (1.0 / r0) * (m0 - m1), (1.0 / r1) * (m1 - m2)
            D1 = D1_0 + (r0 / (r0 + r1)) * (D1_0 - D1_1)
            D2 = (1.0 / (r0 + r1)) * (D1_0 - D1_1)
            return ((sigma_t / sigma_s0) * x - (alpha_t * (torch.exp(-h) - 1.0)) * D0
                    + (alpha_t * ((torch.exp(-h) - 1.0) / h + 1.0)) * D1
                    - (alpha_t * ((torch.exp(-h) - 1.0 + h) / h ** 2 - 0.5)) * D2)
        return step

    def dpmpp_2m_sde(eps, x):
        model_outputs = [None, (x - sig_all[T - MIDDLE] * eps) * 0.5]

        def step():
            step_index = MIDDLE
            alpha_s, sigma_s = sigma_to_alpha_sigma_t(sigmas[step_index])
            x0_pred = (x - sigma_s * eps) / alpha_s
            outputs = [model_outputs[1], x0_pred]
            noise = torch.randn(eps.shape, dtype=torch.float32)  # step()'s randn_tensor
            alpha_t, sigma_t, lambda_t, rest = dpm_lambdas(step_index, 1)
            (_, sigma_s0, lambda_s0), (_, _, lambda_s1) = rest
            m0, m1 = outputs[-1], outputs[-2]
            h, h_0 = lambda_t - lambda_s0, lambda_s0 - lambda_s1
            r0 = h_0 / h
            D0, D1 = m0, (1.0 / r0) * (m0 - m1)
            return ((sigma_t / sigma_s0 * torch.exp(-h)) * x + (alpha_t * (1 - torch.exp(-2.0 * h))) * D0
                    + 0.5 * (alpha_t * (1 - torch.exp(-2.0 * h))) * D1
                    + sigma_t * torch.sqrt(1.0 - torch.exp(-2 * h)) * noise)
        return step

    def dpmpp_3m_sde(eps, x):
        # k-diffusion on x_ve, eta = 1, s_noise = 1, after two steps (denoised_1, denoised_2, h_1, h_2 held)
        step_index = MIDDLE
        sigma, sigma_next = sigmas[step_index], sigmas[step_index + 1]
        x_ve = x * (sigma ** 2 + 1) ** 0.5
        denoised_1, denoised_2 = x_ve * 0.5, x_ve * 0.7
        h_1 = sigmas[step_index - 1].log() - sigma.log()
        h_2 = sigmas[step_index - 2].log() - sigmas[step_index - 1].log()
        eta = 1.0

        def step():
            denoised = x_ve - sigma * eps  # the denoiser's output for an eps model
            t, s_ = -sigma.log(), -sigma_next.log()
            h = s_ - t
            h_eta = h * (eta + 1)
            out = torch.exp(-h_eta) * x_ve + (-h_eta).expm1().neg() * denoised
            r0, r1 = h_1 / h, h_2 / h
            d1_0 = (denoised - denoised_1) / r0
            d1_1 = (denoised_1 - denoised_2) / r1
            d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
            d2 = (d1_0 - d1_1) / (r0 + r1)
            phi_2 = h_eta.neg().expm1() / h_eta + 1
            phi_3 = phi_2 / h_eta - 0.5
            out = out + phi_2 * d1 - phi_3 * d2
            return out + torch.randn(eps.shape, dtype=eps.dtype) * sigma_next * (-2 * h * eta).expm1().neg().sqrt()
        return step

    # diffusers' Euler keeps x in the variance-exploding variable: x_ve = x_vp * sqrt(1 + sigma^2). Both
    # sides step the same x; the PyTorch step starts from x_ve = x * sqrt(1 + sigma^2) precomputed.
    def euler(eps, x):
        step_index = MIDDLE
        x_ve = x * (sigmas[step_index] ** 2 + 1) ** 0.5

        def step():
            sigma = sigmas[step_index]
            model_in = x_ve / ((sigma ** 2 + 1) ** 0.5)   # scale_model_input
            del model_in                                   # (the model would take it)
            sample = x_ve.to(torch.float32)
            sigma_hat = sigma * (0 + 1)                    # s_churn = 0: gamma = 0
            pred_original_sample = sample - sigma_hat * eps
            derivative = (sample - pred_original_sample) / sigma_hat
            dt = sigmas[step_index + 1] - sigma_hat
            prev_sample = sample + derivative * dt
            return prev_sample
        return step

    def euler_ancestral(eps, x):
        step_index = MIDDLE
        x_ve = x * (sigmas[step_index] ** 2 + 1) ** 0.5

        def step():
            sigma = sigmas[step_index]
            model_in = x_ve / ((sigma ** 2 + 1) ** 0.5)   # scale_model_input
            del model_in
            sample = x_ve.to(torch.float32)
            pred_original_sample = sample - sigma * eps
            sigma_from = sigmas[step_index]
            sigma_to = sigmas[step_index + 1]
            sigma_up = (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5
            sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
            derivative = (sample - pred_original_sample) / sigma
            dt = sigma_down - sigma
            prev_sample = sample + derivative * dt
            noise = torch.randn(eps.shape, dtype=eps.dtype)
            prev_sample = prev_sample + noise * sigma_up
            return prev_sample
        return step

    def two_stage(first, second):
        # a step() that runs the first and the second stage of an interval in turn, as a pipeline calls them
        def factory(eps, x):
            state = {"second": False, "kept": None}

            def step():
                fn = second if state["second"] else first
                state["second"] = not state["second"]
                return fn(eps, x, state)
            return step
        return factory

    sigma, sigma_next = sigmas[MIDDLE], sigmas[MIDDLE + 1]
    sigma_mid = sigma.log().lerp(sigma_next.log(), 0.5).exp()

    def heun_first(eps, x, state):
        sample = x * (sigma ** 2 + 1) ** 0.5                       # x_ve (scale_model_input folded in)
        pred_original_sample = sample - sigma * eps
        derivative = (sample - pred_original_sample) / sigma
        dt = sigma_next - sigma
        state["kept"] = (derivative, dt, sample)                   # prev_derivative, dt, sample
        return sample + derivative * dt

    def heun_second(eps, x, state):
        sample = x * (sigma_next ** 2 + 1) ** 0.5
        pred_original_sample = sample - sigma_next * eps
        derivative = (sample - pred_original_sample) / sigma_next
        prev_derivative, dt, sample0 = state["kept"]
        derivative = (prev_derivative + derivative) / 2
        return sample0 + derivative * dt

    def kdpm2_first(eps, x, state):
        sample = x * (sigma ** 2 + 1) ** 0.5
        pred_original_sample = sample - sigma * eps
        derivative = (sample - pred_original_sample) / sigma
        state["kept"] = sample
        return sample + derivative * (sigma_mid - sigma)

    def kdpm2_second(eps, x, state, noise=False):
        sample = x * (sigma_mid ** 2 + 1) ** 0.5
        pred_original_sample = sample - sigma_mid * eps
        derivative = (sample - pred_original_sample) / sigma_mid
        prev = state["kept"] + derivative * (sigma_next - sigma)
        if noise:
            prev = prev + torch.randn(eps.shape, dtype=eps.dtype) * sigma_next * 0.5
        return prev

    def lms(eps, x):
        x_ve = x * (sigma ** 2 + 1) ** 0.5
        derivatives = [eps * 0.9, eps * 0.95, eps * 0.98]          # the three previous derivatives
        coeffs = [0.5, -0.25, 0.125, -0.0625]

        def step():
            sample = x_ve.to(torch.float32)
            pred_original_sample = sample - sigma * eps
            derivative = (sample - pred_original_sample) / sigma
            ds = derivatives[-3:] + [derivative]
            return sample + sum(c * d for c, d in zip(coeffs, reversed(ds)))
        return step

    def plms(eps, x):
        ets = [eps * 0.9, eps * 0.95, eps * 0.98]  # the three previous outputs (the scheduler's ets)

        def step():
            e = ets[-3:] + [eps]
            model_output = (1 / 24) * (55 * e[-1] - 59 * e[-2] + 37 * e[-3] - 9 * e[-4])
            prev_timestep = t - T // N
            alpha_prod_t = alphas_cumprod[t]
            alpha_prod_t_prev = alphas_cumprod[prev_timestep] if prev_timestep >= 0 else alphas_cumprod[0]
            beta_prod_t = 1 - alpha_prod_t
            beta_prod_t_prev = 1 - alpha_prod_t_prev
            sample_coeff = (alpha_prod_t_prev / alpha_prod_t) ** 0.5
            denom = alpha_prod_t * beta_prod_t_prev ** 0.5 + (alpha_prod_t * beta_prod_t * alpha_prod_t_prev) ** 0.5
            return sample_coeff * x - (alpha_prod_t_prev - alpha_prod_t) * model_output / denom
        return step

    def unipc(eps, x):
        # UniPCMultistepScheduler.step at diffusers' defaults (bh2, solver_order 2, predict_x0, epsilon), as after
        # step MIDDLE - 1: the two previous x0 (model_outputs) and the previous corrected sample (last_sample)
        model_outputs = [(x - sig_all[T - MIDDLE] * eps) * 0.5, (x - sig_all[T - MIDDLE] * eps) * 0.7]
        last_sample = x * 0.99

        def lam(index):
            a, s = sigma_to_alpha_sigma_t(sigmas[index])
            return a, s, torch.log(a) - torch.log(s)

        def coefficients(hh, order, rks):
            # the R matrix and b vector of multistep_uni_{p,c}_bh_update (bh2)
            h_phi_1 = torch.expm1(hh)
            h_phi_k = h_phi_1 / hh - 1
            factorial_i = 1
            B_h = torch.expm1(hh)
            R, b = [], []
            for i in range(1, order + 1):
                R.append(torch.pow(rks, i - 1))
                b.append(h_phi_k * factorial_i / B_h)
                factorial_i *= i + 1
                h_phi_k = h_phi_k / hh - 1 / factorial_i
            return h_phi_1, B_h, torch.stack(R), torch.stack(b)

        def step():
            step_index = MIDDLE
            # convert_model_output
            alpha_s, sigma_s = sigma_to_alpha_sigma_t(sigmas[step_index])
            model_t = (x - sigma_s * eps) / alpha_s
            # multistep_uni_c_bh_update, order 2
            m0 = model_outputs[-1]
            alpha_t, sigma_t, lambda_t = lam(step_index)
            alpha_s0, sigma_s0, lambda_s0 = lam(step_index - 1)
            h = lambda_t - lambda_s0
            _, _, lambda_s1 = lam(step_index - 2)
            rk = (lambda_s1 - lambda_s0) / h
            rks = torch.stack([rk, torch.ones(())])
            D1s = torch.stack([(model_outputs[-2] - m0) / rk], dim=1)
            h_phi_1, B_h, R, b = coefficients(-h, 2, rks)
            rhos_c = torch.linalg.solve(R, b)
            x_t_ = sigma_t / sigma_s0 * last_sample - alpha_t * h_phi_1 * m0
            corr_res = torch.einsum("k,bkc...->bc...", rhos_c[:-1], D1s)
            D1_t = model_t - m0
            sample = x_t_ - alpha_t * B_h * (corr_res + rhos_c[-1] * D1_t)
            outputs = [model_outputs[-1], model_t]
            # multistep_uni_p_bh_update, order 2
            m0 = outputs[-1]
            alpha_t, sigma_t, lambda_t = lam(step_index + 1)
            alpha_s0, sigma_s0, lambda_s0 = lam(step_index)
            h = lambda_t - lambda_s0
            _, _, lambda_s1 = lam(step_index - 1)
            rk = (lambda_s1 - lambda_s0) / h
            rks = torch.stack([rk, torch.ones(())])
            D1s = torch.stack([(outputs[-2] - m0) / rk], dim=1)
            h_phi_1, B_h, R, b = coefficients(-h, 2, rks)
            rhos_p = torch.ones(1, dtype=x.dtype) * 0.5
            x_t_ = sigma_t / sigma_s0 * sample - alpha_t * h_phi_1 * m0
            pred_res = torch.einsum("k,bkc...->bc...", rhos_p, D1s)
            return x_t_ - alpha_t * B_h * pred_res
        return step

    def dpmpp_first(eps, x, state):
        x_ve = x * (sigma ** 2 + 1) ** 0.5
        denoised = x_ve - sigma * eps
        t, t_next = sigma.log().neg(), sigma_next.log().neg()
        h = t_next - t
        s_ = t + 0.5 * h
        state["kept"] = x_ve
        return (s_.neg().exp() / t.neg().exp()) * x_ve - (-h * 0.5).expm1() * denoised

    def dpmpp_second(eps, x, state):
        x_2 = x * (sigma_mid ** 2 + 1) ** 0.5
        denoised_2 = x_2 - sigma_mid * eps
        t, t_next = sigma.log().neg(), sigma_next.log().neg()
        h = t_next - t
        out = (t_next.neg().exp() / t.neg().exp()) * state["kept"] - (-h).expm1() * denoised_2
        return out + torch.randn(eps.shape, dtype=eps.dtype) * sigma_next * 0.5

    def sde_ancestral(sigma_from, sigma_to):
        # k-diffusion's get_ancestral_step at eta = 1
        sigma_up = min(sigma_to, (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
        return (sigma_to ** 2 - sigma_up ** 2) ** 0.5, sigma_up

    def dpmpp_sde_first(eps, x, state):
        # k-diffusion's sample_dpmpp_sde, step 1 (r = 1/2), noise_sampler replaced by a stored increment z
        z = state.setdefault("z", torch.randn(eps.shape, dtype=eps.dtype))
        x_ve = x * (sigma ** 2 + 1) ** 0.5
        denoised = x_ve - sigma * eps
        t, t_next = sigma.log().neg(), sigma_next.log().neg()
        h = t_next - t
        s = t + h * 0.5
        sd, su = sde_ancestral(t.neg().exp(), s.neg().exp())
        s_ = sd.log().neg()
        x_2 = (s_.neg().exp() / t.neg().exp()) * x_ve - (t - s_).expm1() * denoised
        state["kept"], state["denoised"] = x_ve, denoised
        return x_2 + z * 1.0 * su

    def dpmpp_sde_second(eps, x, state):
        z = state.setdefault("z", torch.randn(eps.shape, dtype=eps.dtype))
        x_2 = x * (sigma_mid ** 2 + 1) ** 0.5
        denoised_2 = x_2 - sigma_mid * eps
        t, t_next = sigma.log().neg(), sigma_next.log().neg()
        sd, su = sde_ancestral(t.neg().exp(), t_next.neg().exp())
        t_next_ = sd.log().neg()
        fac = 1 / (2 * 0.5)
        denoised_d = (1 - fac) * state["denoised"] + fac * denoised_2
        out = (t_next_.neg().exp() / t.neg().exp()) * state["kept"] - (t - t_next_).expm1() * denoised_d
        return out + z * 1.0 * su

    return {
        "BM_Heun_Step": two_stage(heun_first, heun_second),
        "BM_LMS_Step": lms,
        "BM_PLMS_Step": plms,
        "BM_UniPC_Step": unipc,
        "BM_DPM2_Step": two_stage(kdpm2_first, kdpm2_second),
        "BM_DPM2Ancestral_Step": two_stage(kdpm2_first, lambda e, x, st: kdpm2_second(e, x, st, noise=True)),
        "BM_DPMPP2SAncestral_Step": two_stage(dpmpp_first, dpmpp_second),
        "BM_DPMPPSDE_Step": two_stage(dpmpp_sde_first, dpmpp_sde_second),
        "BM_DPMSolver3M_Step": dpm_solver_3m,
        "BM_DPMPP2MSDE_Step": dpmpp_2m_sde,
        "BM_DPMPP3MSDE_Step": dpmpp_3m_sde,
        "BM_DDPM_Step": ddpm,
        "BM_DDIM_Eta0_Step": ddim(0.0),
        "BM_DDIM_Eta1_Step": ddim(1.0),
        "BM_DPMSolver2M_Step": dpm_solver,
        "BM_Euler_Step": euler,
        "BM_EulerAncestral_Step": euler_ancestral,
    }


def torch_times(threads, min_time, clock):
    import torch  # imported after the thread environment is set

    torch.set_num_threads(threads)
    factories = make_steps(torch)
    result = {}
    with torch.no_grad():
        for shape in SHAPES:
            eps = torch.randn(shape)
            x = torch.randn(shape)
            for name, _ in SAMPLERS:
                step = factories[name](eps, x)
                out = step()
                assert out.shape == x.shape and bool(torch.isfinite(out).all()), name
                result[(shape, name)] = time_torch(step, min_time, clock)
    return result, torch.__version__


def ddpm_times(bench, threads, min_time, repetitions, clock):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [bench, "--benchmark_format=json", f"--benchmark_min_time={min_time}",
           f"--benchmark_repetitions={repetitions}", "--benchmark_filter=^BM_(DDPM|DDIM|DPMSolver|Euler|SampleLoop|Heun|LMS|PLMS|UniPC|DPM2|DPMPP2S|DPMPPSDE_Step/|DPMPP2MSDE|DPMPP3MSDE)"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    key = "cpu_time" if clock == "cpu" else "real_time"
    result = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("error_occurred"):
            raise RuntimeError(f"{b['name']}: {b.get('error_message')}")
        if b.get("run_type", "iteration") != "iteration":
            continue  # the aggregates (mean, median, ...) of the repetitions
        name, *args = b["name"].split("/")
        shape = tuple(int(a.split(":")[1]) for a in args[:4])
        seconds = b[key] * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
        # per_step and triad_fraction are rates of Google Benchmark's CPU time
        entry = {"seconds": seconds, "triad_fraction": b.get("triad_fraction"),
                 "stream_fraction": b.get("stream_fraction"),
                 "per_step": seconds / LOOP_STEPS if name.startswith("BM_SampleLoop") else None}
        best = result.get((shape, name))
        if best is None or entry["seconds"] < best["seconds"]:
            result[(shape, name)] = entry
    return result


# glibc reads these when the process starts: 64 MiB and 256 MiB keep freed tensors in the heap for reuse.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


def main():
    args = parse_args()
    if not args.default_malloc and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:],
                  dict(os.environ, **MALLOC_ENV))
    # PyTorch at its best: OpenBLAS's own pool must not spin beside torch's threads (shared/PERF-NOTES.md).
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    ours = ddpm_times(args.bench, args.threads, args.min_time, args.repetitions, args.clock)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    theirs, version = torch_times(args.threads, args.min_time, clock)
    malloc = "glibc default malloc" if args.default_malloc else "malloc thresholds raised"
    print(f"PyTorch {version}, {args.threads} thread(s), {args.clock} time, {malloc}; time per step, "
          "ratio = PyTorch / ddpm; ddpm's bytes/s over the triad bandwidth of the same size (in cache) and "
          "over STREAM's triad on DRAM-sized arrays\n")
    print("| shape | sampler | PyTorch | ddpm | ratio | ddpm / same-size triad | ddpm / STREAM triad |")
    print("|---|---|---|---|---|---|---|")
    for shape in SHAPES:
        for name, label in SAMPLERS:
            tt = theirs[(shape, name)]
            o = ours[(shape, name)]
            print(f"| {shape} | {label} | {tt * 1e6:.1f} us | {o['seconds'] * 1e6:.2f} us | {tt / o['seconds']:.0f}x "
                  f"| {o['triad_fraction']:.2f} | {o['stream_fraction']:.2f} |")
    print(f"\nddpm::sample() with a zero-cost model ({LOOP_STEPS} DDIM eta=0 steps), time per step: the loop, the same loop "
          "written by hand, the steps alone; overhead = loop - steps alone\n")
    print("| shape | sample() | by hand | steps alone | overhead per step |")
    print("|---|---|---|---|---|")
    for shape in SHAPES:
        loop = ours[(shape, "BM_SampleLoop_Overhead")]["per_step"]
        hand = ours[(shape, "BM_SampleLoop_ByHand")]["per_step"]
        alone = ours[(shape, "BM_SampleLoop_StepsOnly")]["per_step"]
        print(f"| {shape} | {loop * 1e6:.2f} us | {hand * 1e6:.2f} us | {alone * 1e6:.2f} us "
              f"| {(loop - alone) * 1e6:.2f} us |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
