// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Kept for one release for code that includes it: what this header held now lives in
// ddpm/samplers/sampler.hpp (the Sampler concept, no_noise, Clipping, FinalSigma), ddpm/samplers/grid.hpp
// (timesteps and sigmas) and ddpm/samplers/detail/ (the fused step kernel, internal).
// Include ddpm/samplers/sampler.hpp, or the sampler's own header, instead.

#include "ddpm/samplers/detail/sampler_base.hpp"
#include "ddpm/samplers/grid.hpp"
#include "ddpm/samplers/sampler.hpp"
