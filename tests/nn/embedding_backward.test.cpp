// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The ddpm authors
//
// The time-embedding path's kernels [docs/unet.md, Eq. (U4)]: the class embedding table (rows picked,
// scatter-add backward, labels checked) and the timestep MLP's backward against central finite
// differences (PyTorch gradcheck's eps 1e-6, atol 1e-5, rtol 1e-3) of L = sum(w * temb) through
// nn::TimestepEmbedding<double>, with the UNet's activation after it and a class embedding added.

#include <catch2/catch.hpp>

#include <cstring>
#include <functional>
#include <vector>

#include "ddpm/nn/detail/embedding_backward.hpp"
#include "ddpm/nn/timestep_embedding.hpp"
#include "nn_reference.hpp"

namespace {

using nn_test::Index;
using ddpm::nn::Activation;

std::vector<double> uniform_vector(Index n, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  nn_test::Uniform u(seed);
  std::vector<double> v(static_cast<std::size_t>(n));
  for (double& e : v) e = u(lo, hi);
  return v;
}

int check_against_finite_differences(const std::string& what, const double* analytic, double* p, Index n,
                                     const std::function<double()>& loss) {
  constexpr double eps = 1e-6, atol = 1e-5, rtol = 1e-3;
  int failures = 0;
  for (Index i = 0; i < n; ++i) {
    const double saved = p[i];
    p[i] = saved + eps;
    const double plus = loss();
    p[i] = saved - eps;
    const double minus = loss();
    p[i] = saved;
    const double numeric = (plus - minus) / (2 * eps);
    if (!(std::abs(analytic[i] - numeric) <= atol + rtol * std::abs(numeric))) {
      if (++failures <= 5) UNSCOPED_INFO(what << "[" << i << "]: analytic " << analytic[i] << ", numeric " << numeric);
    }
  }
  return failures;
}

}  // namespace

TEMPLATE_TEST_CASE("embedding_forward picks the labels' rows", "[nn][embedding]", float, double) {
  using S = TestType;
  const Index classes = 4, dim = 3;
  std::vector<S> weight(classes * dim);
  for (Index i = 0; i < classes * dim; ++i) weight[i] = S(i);
  const std::vector<int> labels{2, 0, 2, 3, 1};
  std::vector<S> out(labels.size() * dim, S(-1));
  ddpm::nn::detail::embedding_forward<S>(weight.data(), classes, dim, labels, out.data());
  for (std::size_t b = 0; b < labels.size(); ++b)
    for (Index j = 0; j < dim; ++j) CHECK(out[b * dim + j] == S(labels[b] * dim + j));
  ddpm::nn::detail::embedding_forward<S>(weight.data(), classes, dim, labels, out.data(), true);
  for (std::size_t b = 0; b < labels.size(); ++b)
    for (Index j = 0; j < dim; ++j) CHECK(out[b * dim + j] == S(2 * (labels[b] * dim + j)));
}

TEST_CASE("embedding_backward scatter-adds the rows (finite differences of the forward)", "[nn][embedding]") {
  const Index classes = 5, dim = 7;
  std::vector<double> weight = uniform_vector(classes * dim, 1);
  const std::vector<int> labels{3, 1, 3, 0, 3, 1};  // repeated labels; class 2 and 4 unused
  const Index B = static_cast<Index>(labels.size());
  const std::vector<double> w = uniform_vector(B * dim, 2);
  std::vector<double> out(B * dim);
  auto loss = [&] {
    ddpm::nn::detail::embedding_forward<double>(weight.data(), classes, dim, labels, out.data());
    double l = 0.0;
    for (Index i = 0; i < B * dim; ++i) l += w[i] * out[i];
    return l;
  };
  std::vector<double> d_weight(classes * dim, 0.0);
  ddpm::nn::detail::embedding_backward<double>(labels, w.data(), classes, dim, d_weight.data());
  CHECK(check_against_finite_differences("d_weight", d_weight.data(), weight.data(), classes * dim, loss) == 0);
  for (Index j = 0; j < dim; ++j) {
    CHECK(d_weight[2 * dim + j] == 0.0);
    CHECK(d_weight[4 * dim + j] == 0.0);
  }
  // accumulates
  const std::vector<double> once = d_weight;
  ddpm::nn::detail::embedding_backward<double>(labels, w.data(), classes, dim, d_weight.data());
  for (Index i = 0; i < classes * dim; ++i) CHECK(d_weight[i] == 2 * once[i]);
}

TEST_CASE("embedding kernels reject labels out of range, naming the index and the value", "[nn][embedding]") {
  std::vector<float> weight(3 * 2), out(3 * 2);
  const std::vector<int> high{0, 1, 3}, low{-1, 0, 0};
  REQUIRE_THROWS_AS(ddpm::nn::detail::embedding_forward<float>(weight.data(), 3, 2, high, out.data()),
                    ddpm::invalid_argument);
  REQUIRE_THROWS_WITH(ddpm::nn::detail::embedding_forward<float>(weight.data(), 3, 2, high, out.data()),
                      Catch::Contains("labels[2] is 3") && Catch::Contains("[0, 3)"));
  REQUIRE_THROWS_WITH(ddpm::nn::detail::embedding_backward<float>(low, out.data(), 3, 2, weight.data()),
                      Catch::Contains("labels[0] is -1"));
  REQUIRE_THROWS_AS(ddpm::nn::detail::embedding_backward<float>(low, out.data(), 3, 2, weight.data()),
                    ddpm::invalid_argument);
}

TEST_CASE("timestep_mlp_backward against finite differences through TimestepEmbedding<double>",
          "[nn][embedding][timestep_embedding]") {
  using Matrix = ddpm::nn::TimestepEmbedding<double>::Matrix;
  const Index B = 3, in = 5, dim = 7, classes = 4;
  ddpm::nn::TimestepEmbedding<double> mlp(in, dim);
  nn_test::randomize<double>(mlp, 3, 2.0);  // weights of +-2 sqrt(3 / fan_in): the SiLU's curved region
  Matrix x(B, in);
  {
    const std::vector<double> v = uniform_vector(B * in, 4, -2, 2);
    std::copy(v.begin(), v.end(), x.data());
  }
  std::vector<double> table = uniform_vector(classes * dim, 5);
  const std::vector<int> labels{2, 0, 2};
  const std::vector<double> w = uniform_vector(B * dim, 6);
  for (const Activation out_act : {Activation::identity, Activation::silu, Activation::gelu}) {
    for (const bool with_class : {false, true}) {
      INFO("out_act " << int(out_act) << ", class embedding " << with_class);
      // L = sum w * out_act(mlp(x) + table[labels])
      auto loss = [&] {
        Matrix y = mlp(x);
        if (with_class) ddpm::nn::detail::embedding_forward<double>(table.data(), classes, dim, labels, y.data(), true);
        ddpm::nn::apply_activation(out_act, y.data(), y.size());
        double l = 0.0;
        for (Index i = 0; i < B * dim; ++i) l += w[i] * y.data()[i];
        return l;
      };
      std::vector<double> class_rows(B * dim);
      ddpm::nn::detail::embedding_forward<double>(table.data(), classes, dim, labels, class_rows.data());
      const ddpm::nn::detail::TimestepMlpArgs<double> args{B,
                                                           in,
                                                           dim,
                                                           mlp.linear_1().weight().data(),
                                                           mlp.linear_1().bias().data(),
                                                           mlp.linear_2().weight().data(),
                                                           mlp.linear_2().bias().data(),
                                                           Activation::silu,
                                                           out_act,
                                                           with_class ? class_rows.data() : nullptr};
      std::vector<double> dw1(dim * in, 0.0), db1(dim, 0.0), dw2(dim * dim, 0.0), db2(dim, 0.0), dx(B * in),
          dadd(B * dim), dtable(classes * dim, 0.0);
      ddpm::nn::Context<double> ctx(1);
      ddpm::nn::detail::timestep_mlp_backward<double>(
          ctx, args, x.data(), w.data(), {dw1.data(), db1.data(), dw2.data(), db2.data(), dx.data(), dadd.data()});
      ddpm::nn::detail::embedding_backward<double>(labels, dadd.data(), classes, dim, dtable.data());
      CHECK(check_against_finite_differences("d_w1", dw1.data(), mlp.linear_1().weight().data(), dim * in, loss) == 0);
      CHECK(check_against_finite_differences("d_b1", db1.data(), mlp.linear_1().bias().data(), dim, loss) == 0);
      CHECK(check_against_finite_differences("d_w2", dw2.data(), mlp.linear_2().weight().data(), dim * dim, loss) == 0);
      CHECK(check_against_finite_differences("d_b2", db2.data(), mlp.linear_2().bias().data(), dim, loss) == 0);
      CHECK(check_against_finite_differences("d_x", dx.data(), x.data(), B * in, loss) == 0);
      if (with_class) {
        CHECK(check_against_finite_differences("d_table", dtable.data(), table.data(), classes * dim, loss) == 0);
      }
    }
  }
}

TEST_CASE("timestep_mlp_backward: float agrees with double; thread counts and batch shapes; accumulation",
          "[nn][embedding][timestep_embedding]") {
  // batch 1 takes the GEMM's matrix-vector path, batch 9 with dim 40 Eigen's blocked GEMM
  for (const Index B : {Index{1}, Index{9}}) {
    const Index in = 24, dim = 40;
    std::vector<std::vector<double>> results;
    auto run = [&]<class S>(S, int threads, bool twice) {
      ddpm::nn::TimestepEmbedding<S> mlp(in, dim);
      nn_test::randomize<S>(mlp, 7);
      std::vector<S> x(B * in), d_out(B * dim), add(B * dim);
      nn_test::Uniform u(8);
      for (S& v : x) v = static_cast<S>(u());
      for (S& v : d_out) v = static_cast<S>(u());
      for (S& v : add) v = static_cast<S>(u());
      const ddpm::nn::detail::TimestepMlpArgs<S> args{B, in, dim, mlp.linear_1().weight().data(),
                                                      mlp.linear_1().bias().data(), mlp.linear_2().weight().data(),
                                                      mlp.linear_2().bias().data(), Activation::silu, Activation::silu,
                                                      add.data()};
      std::vector<S> dw1(dim * in, S(0)), db1(dim, S(0)), dw2(dim * dim, S(0)), db2(dim, S(0)), dx(B * in), dadd(B * dim);
      ddpm::nn::Context<S> ctx(threads);
      for (int k = 0; k < (twice ? 2 : 1); ++k) {
        ddpm::nn::detail::timestep_mlp_backward<S>(
            ctx, args, x.data(), d_out.data(), {dw1.data(), db1.data(), dw2.data(), db2.data(), dx.data(), dadd.data()});
      }
      for (const auto* v : {&dw1, &db1, &dw2, &db2, &dx, &dadd}) results.emplace_back(v->begin(), v->end());
    };
    run(float{}, 1, false);   // results 0..5
    run(double{}, 1, false);  // 6..11
    run(double{}, 2, false);  // 12..17
    run(double{}, 1, true);   // 18..23
    for (std::size_t k = 0; k < 6; ++k) {
      INFO("batch " << B << ", gradient " << k);
      const auto &f = results[k], &d = results[k + 6], &d2 = results[k + 12], &acc = results[k + 18];
      CHECK(d2 == d);
      double err = 0.0, mag = 0.0;
      for (std::size_t i = 0; i < d.size(); ++i) {
        err = std::max(err, std::abs(f[i] - d[i]));
        mag = std::max(mag, std::abs(d[i]));
        if (k < 4) CHECK(acc[i] == 2 * d[i]);  // parameter gradients accumulate (x + x is exact)
        if (k >= 4) CHECK(acc[i] == d[i]);     // input gradients are written
      }
      // sums of at most 40 products of O(1) terms, inputs rounded to float: ~25 float roundings (6e-8) of
      // the largest gradient at most (measured: 2.7e-7)
      CHECK(err <= 1.5e-6 * mag);
    }
  }
}

TEST_CASE("timestep_mlp_backward rejects bad arguments", "[nn][embedding][timestep_embedding]") {
  ddpm::nn::Context<float> ctx(1);
  std::vector<float> w(4, 0.0f), x(2), d(2);
  ddpm::nn::detail::TimestepMlpArgs<float> args{1, 2, 2, w.data(), nullptr, w.data(), nullptr};
  CHECK_NOTHROW(ddpm::nn::detail::timestep_mlp_backward<float>(ctx, args, x.data(), d.data(), {}));
  args.batch = 0;
  REQUIRE_THROWS_AS(ddpm::nn::detail::timestep_mlp_backward<float>(ctx, args, x.data(), d.data(), {}),
                    ddpm::invalid_argument);
  args.batch = 1;
  args.w2 = nullptr;
  REQUIRE_THROWS_AS(ddpm::nn::detail::timestep_mlp_backward<float>(ctx, args, x.data(), d.data(), {}),
                    ddpm::invalid_argument);
}
