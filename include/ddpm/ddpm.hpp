// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// The ddpm core, in dependency order: each header needs only those above it.
// The reference network (ddpm/nn/) and file formats (ddpm/io/) are included separately.

#include "ddpm/version.hpp"
#include "ddpm/error.hpp"
#include "ddpm/tensor.hpp"
#include "ddpm/random.hpp"
#include "ddpm/torch_random.hpp"
#include "ddpm/brownian_tree.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/forward.hpp"
#include "ddpm/posterior.hpp"
#include "ddpm/gaussian.hpp"
#include "ddpm/predictor.hpp"
#include "ddpm/timesteps.hpp"
#include "ddpm/samplers/sampler.hpp"
#include "ddpm/samplers/grid.hpp"
#include "ddpm/samplers/ddpm.hpp"
#include "ddpm/samplers/ddim.hpp"
#include "ddpm/samplers/dpm_solver.hpp"
#include "ddpm/samplers/euler.hpp"
#include "ddpm/samplers/euler_ancestral.hpp"
#include "ddpm/samplers/heun.hpp"
#include "ddpm/samplers/lms.hpp"
#include "ddpm/samplers/pndm.hpp"
#include "ddpm/samplers/dpm2.hpp"
#include "ddpm/samplers/dpmpp_2s_ancestral.hpp"
#include "ddpm/samplers/dpmpp_sde.hpp"
#include "ddpm/sample.hpp"
#include "ddpm/timestep_sampler.hpp"
#include "ddpm/loss.hpp"
#include "ddpm/vlb.hpp"
#include "ddpm/optim.hpp"
#include "ddpm/lr_schedule.hpp"
#include "ddpm/ema.hpp"
