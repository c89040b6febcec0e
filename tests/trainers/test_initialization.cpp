#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/test_support.h"
#include "trainers/initialization.h"

namespace {

using perceiver::trainers::apply_init_std;

struct TwoLayers : torch::nn::Module {
  TwoLayers() {
    first = register_module("first", torch::nn::Linear(64, 128));
    second = register_module("second", torch::nn::Linear(128, 64));
    torch::NoGradGuard no_grad;
    for (auto& p : parameters()) p.fill_(0.25);
  }
  torch::nn::Linear first{nullptr}, second{nullptr};
};

TEST(TrainInitStd, RedrawsOnlyMatchingParametersWithTheirStd) {
  torch::manual_seed(3);
  TwoLayers m;
  // The first matching rule decides: first.weight gets 2.0 although "*weight" also matches it.
  EXPECT_EQ(apply_init_std(m, {{"first.weight", 2.0}, {"*weight", 0.5}}), 2);
  EXPECT_NEAR(m.first->weight.std().item<double>(), 2.0, 0.1);
  EXPECT_NEAR(m.first->weight.mean().item<double>(), 0.0, 0.1);
  EXPECT_NEAR(m.second->weight.std().item<double>(), 0.5, 0.03);
  EXPECT_TRUE(torch::all(m.first->bias == 0.25).item<bool>());
  EXPECT_TRUE(torch::all(m.second->bias == 0.25).item<bool>());
}

TEST(TrainInitStd, SameSeedSameDraws) {
  auto draw = [] {
    torch::manual_seed(11);
    TwoLayers m;
    apply_init_std(m, {{"re:^second\\.", 0.1}});
    return m.second->weight.clone();
  };
  EXPECT_TRUE(torch::equal(draw(), draw()));
}

TEST(TrainInitStd, NamesPatternsThatMatchNothingAndNegativeStd) {
  TwoLayers m;
  EXPECT_EQ(perceiver::testing::error_of([&] { apply_init_std(m, {{"*conv*", 1.0}}); }),
            "pattern '*conv*' matches no parameter");
  EXPECT_EQ(perceiver::testing::error_of([&] { apply_init_std(m, {{"first.bias", -1.0}}); }),
            "pattern 'first.bias': std must be >= 0");
  // A pattern shadowed by an earlier one still counts as matching.
  EXPECT_NO_THROW(apply_init_std(m, {{"*", 0.1}, {"first.*", 1.0}}));
}

}  // namespace
