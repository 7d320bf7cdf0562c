// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
#pragma once

// Shared by dpm_solver.test.cpp and dpmpp_sde_multistep.test.cpp: the options of a case of
// tests/data/samplers/multistep.json (tests/reference/make_multistep_fixtures.py) and its replay.

#include <cmath>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "ddpm/samplers/dpm_solver.hpp"
#include "ddpm/samplers/dpmpp_sde_multistep.hpp"
#include "ksampler_support.hpp"

namespace multistep_test {

using namespace ksampler_test;

inline ddpm::SolverType solver_type_of(const json& o) {
  return o.value("solver_type", std::string("midpoint")) == "heun" ? ddpm::SolverType::heun : ddpm::SolverType::midpoint;
}

inline ddpm::FinalSigma final_sigma_of(const json& o) {
  return o.value("final_sigma", std::string("zero")) == "zero" ? ddpm::FinalSigma::zero : ddpm::FinalSigma::sigma_min;
}

/// DPMSolverOptions of a case, by diffusers' names.
inline ddpm::DPMSolverOptions dpm_solver_options(const json& o) {
  ddpm::DPMSolverOptions r = grid_options<ddpm::DPMSolverOptions>(o);
  if (o.value("use_exponential_sigmas", false)) r.grid.sigma_spacing = ddpm::SigmaSpacing::exponential;
  r.grid.final_sigma = final_sigma_of(o);
  r.solver_order = o.value("solver_order", 2);
  r.solver_type = solver_type_of(o);
  const std::string a = o.value("algorithm_type", std::string("dpmsolver++"));
  r.algorithm_type = a == "dpmsolver"         ? ddpm::DPMSolverAlgorithm::dpmsolver
                     : a == "sde-dpmsolver++" ? ddpm::DPMSolverAlgorithm::sde_dpmsolver_pp
                     : a == "sde-dpmsolver"   ? ddpm::DPMSolverAlgorithm::sde_dpmsolver
                                              : ddpm::DPMSolverAlgorithm::dpmsolver_pp;
  r.lower_order_final = o.value("lower_order_final", true);
  r.euler_at_final = o.value("euler_at_final", false);
  return r;
}

/// DPMPPMultistepSDEOptions of a case, by k-diffusion's names.
inline ddpm::DPMPPMultistepSDEOptions k_options(const json& o) {
  ddpm::DPMPPMultistepSDEOptions r = grid_options<ddpm::DPMPPMultistepSDEOptions>(o);
  if (o.value("sigma_spacing", std::string()) == "exponential") r.grid.sigma_spacing = ddpm::SigmaSpacing::exponential;
  r.eta = o.value("eta", 1.0);
  r.s_noise = o.value("s_noise", 1.0);
  r.solver_type = solver_type_of(o);
  return r;
}

/// The fixture model: the mixture's E[eps | x] at alpha_bar[t] (2^-24 where alpha_bar[t] = 0, as the
/// generator), given as the prediction of `kind` (KindModel's conversions).
template <class S>
struct MultistepModel {
  ddpm::GaussianMixturePredictor<S> mixture;
  std::vector<double> alpha_bar;
  Prediction kind;
  Tensor<S, 2> operator()(const Tensor<S, 2>& x, int t) const {
    const double ab = alpha_bar[static_cast<std::size_t>(t)] > 0.0 ? alpha_bar[static_cast<std::size_t>(t)] : 0x1p-24;
    Tensor<S, 2> eps(x.dimensions()), out(x.dimensions());
    mixture.predict_at(ab, x, eps);
    for (Eigen::Index i = 0; i < x.size(); ++i) {
      const double e = eps.data()[i], xv = x.data()[i];
      const double x0 = (xv - std::sqrt(1 - ab) * e) / std::sqrt(ab);
      out.data()[i] = static_cast<S>(kind == Prediction::epsilon  ? e
                                     : kind == Prediction::sample ? x0
                                                                  : std::sqrt(ab) * e - std::sqrt(1 - ab) * x0);
    }
    return out;
  }
};

/// Replays case c: the timesteps and sigmas, x after every step within traj_tol<S>, the number of draws.
template <class S, class Sm>
void replay_case(Sm& sampler, const json& c, const json& f) {
  const Eigen::Index B = f.at("shape")[0], D = f.at("shape")[1], n = B * D;
  const std::array<Eigen::Index, 2> dims{B, D};
  const auto schedule = make_schedule<S>(f.at("schedules").at(c.value("schedule", std::string("linear"))));
  const Prediction kind = kind_of(c.at("kind"));
  const MultistepModel<S> model{fixture_mixture<S>(schedule), schedule.alphas_cumprod_double(), kind};
  REQUIRE(sampler.timesteps() == c.at("call_timesteps").get<std::vector<int>>());
  const auto sigmas = numbers(c.at("sigmas"));
  REQUIRE(sampler.sigmas().size() == sigmas.size());
  for (std::size_t k = 0; k < sigmas.size(); ++k) CHECK(sampler.sigmas()[k] == Approx(sigmas[k]).epsilon(1e-13));
  ReplayNoise<S> replay(numbers(f.at("noises")), n);
  Tensor<S, 2> x = tensor<S, 2>(numbers(f.at("x_T")), dims);
  const auto& xs = c.at("xs");
  for (int i = 0; i < sampler.num_inference_steps(); ++i) {
    const Tensor<S, 2> out = model(x, sampler.timesteps()[static_cast<std::size_t>(i)]);
    sampler.step(i, out, x, replay, kind);
    INFO("x after step " << i);
    CHECK(worst_error(x, numbers(xs.at(static_cast<std::size_t>(i)))) <= traj_tol<S>);
  }
  CHECK(replay.calls == c.at("noise_used").get<Eigen::Index>());
}

}  // namespace multistep_test
