// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

#define DDPM_VERSION_MAJOR 0
#define DDPM_VERSION_MINOR 1
#define DDPM_VERSION_PATCH 0
