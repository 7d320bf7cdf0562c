#include <catch2/catch.hpp>
#include "ddpm/ddpm.hpp"
TEST_CASE("smoke", "[smoke]") {
  auto s = ddpm::NoiseSchedule<float>::linear();
  ddpm::Tensor<float, 4> x(2, 3, 4, 4), e(2, 3, 4, 4);
  x.setConstant(1.f); e.setConstant(0.5f);
  auto y = ddpm::q_sample(s, x, 10, e);
  std::vector<int> ts{1, 999};
  auto z = ddpm::q_sample(s, x, std::span<const int>(ts), e);
  ddpm::ConstTensorMap<float, 4> xm(x.data(), 2, 3, 4, 4);
  auto w = ddpm::q_sample(s, xm, 10, e);
  auto p = ddpm::q_posterior(s, x, y, 10);
  auto x0 = ddpm::predict_x0_from_eps(s, y, 10, e);
  REQUIRE(std::abs(x0(0,0,0,0) - 1.f) < 1e-5f);
  REQUIRE(w(1,2,3,3) == y(1,2,3,3));
  auto q = ddpm::q_step(s, x, std::span<const int>(ts), e);
  auto g = ddpm::q_mean_variance(s, x, 3);
  auto v = ddpm::predict_v(s, x, 3, e);
  auto ev = ddpm::predict_eps_from_v(s, y, 3, v);
  auto ex = ddpm::predict_eps_from_x0(s, y, 3, x);
  auto xv = ddpm::predict_x0_from_v(s, y, 3, v);
  (void)p; (void)z; (void)q; (void)g; (void)ev; (void)ex; (void)xv;
  REQUIRE(ddpm::space_timesteps(1000, "ddim50").size() == 50);
  auto r = ddpm::respace(s, ddpm::space_timesteps(1000, "ddim50"));
  REQUIRE(r.timestep_map()[1] == 20);
  auto z0 = s.rescaled_zero_terminal_snr();
  REQUIRE(z0.alphas_cumprod()[999] == 0.f);
}
