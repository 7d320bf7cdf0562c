// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
