// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors

// Tests of include/ddpm/torch_random.hpp against PyTorch's own numbers: tests/data/core/torch_generator.json,
// written by tests/reference/make_torch_generator_fixtures.py running Debian's python3-torch (the version is
// in the file). Every comparison is of bit patterns: the generator claims PyTorch's numbers exactly.

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "ddpm/random.hpp"
#include "ddpm/torch_random.hpp"

namespace {

using json = nlohmann::json;
using ddpm::TorchGenerator;
using ddpm::TorchGenerators;
using ddpm::TorchNormalKernel;

const json& fixture() {
  static const json j = [] {
    const std::string path = std::string(DDPM_TEST_DATA_DIR) + "/core/torch_generator.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open test fixture " + path);
    return json::parse(in);
  }();
  return j;
}

std::uint64_t seed_of(const json& j) { return std::stoull(j.get<std::string>()); }

/// The bit patterns of a fixture string: 8 hex digits per float32, 16 per float64.
template <class S>
std::vector<S> values_of(const std::string& hex) {
  using Bits = std::conditional_t<std::is_same_v<S, float>, std::uint32_t, std::uint64_t>;
  constexpr std::size_t kDigits = 2 * sizeof(Bits);
  REQUIRE(hex.size() % kDigits == 0);
  std::vector<S> out(hex.size() / kDigits);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const auto bits = static_cast<Bits>(std::stoull(hex.substr(i * kDigits, kDigits), nullptr, 16));
    out[i] = std::bit_cast<S>(bits);
  }
  return out;
}

/// The index of the first element whose bits differ, or -1.
template <class S>
long first_difference(const std::vector<S>& a, const std::vector<S>& b) {
  if (a.size() != b.size()) return 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(S)) != 0) return static_cast<long>(i);
  }
  return -1;
}

template <class S>
std::vector<S> randn(TorchGenerator& g, std::size_t n) {
  std::vector<S> v(n);
  g.randn(std::span<S>(v));
  return v;
}

template <class S>
void check_randn_case(const json& c) {
  TorchGenerator g(seed_of(c["seed"]));
  const auto n = c["n"].get<std::size_t>();
  const std::vector<S> expected = values_of<S>(c["bits"].get<std::string>());
  const std::vector<S> got = randn<S>(g, n);
  INFO("seed " << c["seed"].get<std::string>() << ", " << c["dtype"].get<std::string>() << ", n " << n);
  CHECK(first_difference(got, expected) == -1);
}

}  // namespace

TEST_CASE("TorchMT19937 is MT19937 seeded with the low 32 bits", "[torch_random]") {
  // std::mt19937 is the standard's definition of the same engine (init_genrand seeding, 10000th output
  // 4123659995 for the default seed 5489, [rand.predef]).
  ddpm::TorchMT19937 engine;
  std::uint32_t last = 0;
  for (int i = 0; i < 10000; ++i) last = engine();
  CHECK(last == 4123659995u);
  for (const std::uint64_t seed :
       {std::uint64_t{0}, std::uint64_t{42}, (std::uint64_t{1} << 32) + 5, std::uint64_t{0x9E3779B97F4A7C15}}) {
    ddpm::TorchMT19937 mine(seed);
    std::mt19937 reference(static_cast<std::uint32_t>(seed));
    bool same = true;
    for (int i = 0; i < 2000; ++i) same = same && mine() == reference();  // crosses a twist of the state
    CHECK(same);
    CHECK(mine.seed() == seed);
  }
}

TEST_CASE("TorchGenerator: torch.randn bit for bit, both paths, float32 and float64", "[torch_random]") {
  INFO("fixture from torch " << fixture()["torch_version"].get<std::string>() << ", kernel "
                             << fixture()["cpu_capability"].get<std::string>());
  REQUIRE(fixture()["randn"].size() == 4 * 2 * 8);
  for (const json& c : fixture()["randn"]) {
    if (c["dtype"] == "float32") {
      check_randn_case<float>(c);
    } else {
      check_randn_case<double>(c);
    }
  }
}

TEST_CASE("TorchGenerator: consecutive calls continue the stream as PyTorch does", "[torch_random]") {
  const json& run = fixture()["consecutive"];
  TorchGenerator g(seed_of(run["seed"]));
  int call = 0;
  for (const json& c : run["calls"]) {
    INFO("call " << call++ << ": n " << c["n"].get<int>() << ", " << c["dtype"].get<std::string>());
    const auto n = c["n"].get<std::size_t>();
    if (c["dtype"] == "float32") {
      CHECK(first_difference(randn<float>(g, n), values_of<float>(c["bits"].get<std::string>())) == -1);
    } else {
      CHECK(first_difference(randn<double>(g, n), values_of<double>(c["bits"].get<std::string>())) == -1);
    }
  }
  // manual_seed forgets the normal an odd scalar-path call kept.
  const json& reseed = run["reseed"];
  g.manual_seed(seed_of(reseed["seed"]));
  randn<float>(g, 3);
  REQUIRE(g.next_normal().has_value());
  g.manual_seed(seed_of(reseed["seed"]));
  CHECK_FALSE(g.next_normal().has_value());
  CHECK(first_difference(randn<double>(g, 4), values_of<double>(reseed["bits"].get<std::string>())) == -1);
}

TEST_CASE("TorchGenerator: torch.rand and the noise-source members", "[torch_random]") {
  for (const json& c : fixture()["rand"]) {
    TorchGenerator g(seed_of(c["seed"]));
    const auto n = c["n"].get<std::size_t>();
    if (c["dtype"] == "float32") {
      std::vector<float> v(n);
      g.rand(std::span<float>(v));
      CHECK(first_difference(v, values_of<float>(c["bits"].get<std::string>())) == -1);
    } else {
      std::vector<double> v(n);
      g.uniform(std::span<double>(v));
      CHECK(first_difference(v, values_of<double>(c["bits"].get<std::string>())) == -1);
    }
  }
  // noise(tensor) and fill(span) are one randn of the tensor's size, in memory order.
  const json& c = fixture()["randn"][4];  // seed 0, float32, n 17
  REQUIRE(c["n"] == 17);
  TorchGenerator g(seed_of(c["seed"]));
  ddpm::Tensor<float, 2> x(1, 17);
  static_assert(ddpm::NoiseSourceFor<TorchGenerator&, float, 2>);
  g(x);
  const std::vector<float> expected = values_of<float>(c["bits"].get<std::string>());
  CHECK(first_difference(std::vector<float>(x.data(), x.data() + 17), expected) == -1);
  TorchGenerator h(seed_of(c["seed"]));
  std::vector<float> v(17);
  h.fill(std::span<float>(v));
  CHECK(first_difference(v, expected) == -1);
  CHECK(TorchGenerator().initial_seed() == TorchGenerator::kDefaultSeed);
  CHECK(TorchGenerator((std::uint64_t{1} << 32) + 5).initial_seed() == (std::uint64_t{1} << 32) + 5);
}

TEST_CASE("TorchGenerators: diffusers' randn_tensor with a list of generators and with one", "[torch_random]") {
  for (const json& c : fixture()["generators"]) {
    const auto shape = c["shape"].get<std::vector<Eigen::Index>>();
    const std::array<Eigen::Index, 4> dims{shape[0], shape[1], shape[2], shape[3]};
    std::vector<std::uint64_t> seeds;
    for (const json& s : c["seeds"]) seeds.push_back(seed_of(s));
    INFO("shape " << c["shape"].dump() << ", " << c["dtype"].get<std::string>());
    auto run = [&]<class S>(S) {
      TorchGenerators gens = TorchGenerators::from_seeds(seeds);
      const ddpm::Tensor<S, 4> first = ddpm::randn_tensor<S, 4>(dims, gens);
      ddpm::Tensor<S, 4> second(dims);
      gens(second);
      TorchGenerator one(seeds[0]);
      const ddpm::Tensor<S, 4> whole = ddpm::randn_tensor<S, 4>(dims, one);
      auto as_vector = [](const ddpm::Tensor<S, 4>& t) { return std::vector<S>(t.data(), t.data() + t.size()); };
      CHECK(first_difference(as_vector(first), values_of<S>(c["list_first"].get<std::string>())) == -1);
      CHECK(first_difference(as_vector(second), values_of<S>(c["list_second"].get<std::string>())) == -1);
      CHECK(first_difference(as_vector(whole), values_of<S>(c["one"].get<std::string>())) == -1);
    };
    if (c["dtype"] == "float32") {
      run(float{});
    } else {
      run(double{});
    }
  }
}

TEST_CASE("TorchGenerator: the non-AVX2 float32 kernel (C library logf, cosf, sinf)", "[torch_random]") {
  const json& libm = fixture()["libm"];
  INFO("PyTorch kernel of the fixture: " << libm["cpu_capability"].get<std::string>());
  for (const json& c : libm["cases"]) {
    TorchGenerator g(c["seed"].get<std::uint64_t>(), TorchNormalKernel::libm);
    const auto n = c["n"].get<std::size_t>();
    INFO("seed " << c["seed"].get<std::uint64_t>() << ", n " << n);
    CHECK(first_difference(randn<float>(g, n), values_of<float>(c["bits"].get<std::string>())) == -1);
  }
}

TEST_CASE("TorchGenerator: the AVX2 float32 kernel stays within float rounding of the exact Box-Muller",
          "[torch_random]") {
  // An independent check of the emulated polynomials (the fixtures above pin their bits): the same
  // uniforms through double-precision log/sin/cos. avx_mathfun's logf and sincosf are accurate to a few
  // float ulp on these arguments; the radius sqrt(-2 ln u1) amplifies a relative error of ln u1 by 1/2,
  // so |z_avx2 - z_exact| <= 1e-6 * max(1, |z|) covers them with a margin (float ulp is 1.2e-7).
  TorchGenerator g(2024);
  TorchGenerator uniforms(2024);
  const std::size_t n = 4096;
  const std::vector<float> z = randn<float>(g, n);
  std::vector<float> u(n);
  uniforms.rand(std::span<float>(u));
  double worst = 0;
  for (std::size_t i = 0; i < n; i += 16) {
    for (std::size_t j = 0; j < 8; ++j) {
      const double r = std::sqrt(-2.0 * std::log(1.0 - static_cast<double>(u[i + j])));
      const double theta = static_cast<double>(static_cast<float>(2.0 * 3.14159265358979323846) * u[i + j + 8]);
      const double c = r * std::cos(theta), s = r * std::sin(theta);
      worst = std::max(worst, std::abs(z[i + j] - c) / std::max(1.0, std::abs(c)));
      worst = std::max(worst, std::abs(z[i + j + 8] - s) / std::max(1.0, std::abs(s)));
    }
  }
  CHECK(worst <= 1e-6);
}

TEST_CASE("TorchGenerators: invalid arguments", "[torch_random]") {
  CHECK_THROWS_AS(TorchGenerators(std::vector<TorchGenerator>{}), ddpm::invalid_argument);
  CHECK_THROWS_AS(TorchGenerators::from_seeds(std::span<const std::uint64_t>()), ddpm::invalid_argument);
  TorchGenerators gens = TorchGenerators::from_seeds({1, 2});
  ddpm::Tensor<float, 4> x(3, 1, 2, 2);
  CHECK_THROWS_WITH(gens(x), Catch::Contains("ddpm::TorchGenerators") && Catch::Contains("3") &&
                                 Catch::Contains("number of generators, 2"));
  // An empty batch of the right size draws nothing.
  TorchGenerators none = TorchGenerators::from_seeds({5});
  ddpm::Tensor<double, 2> empty(1, 0);
  none(empty);
  std::vector<double> after(2), fresh(2);
  none[0].randn(std::span<double>(after));
  TorchGenerator(5).randn(std::span<double>(fresh));
  CHECK(first_difference(after, fresh) == -1);
}
