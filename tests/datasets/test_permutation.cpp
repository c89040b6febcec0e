#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "datasets/permutation.h"

namespace pd = perceiver::datasets;

TEST(DatasetsPermutation, IsABijectionOfEverySize) {
  for (const uint64_t n : {1ull, 2ull, 3ull, 4ull, 5ull, 17ull, 64ull, 100ull, 1000ull, 4097ull}) {
    const pd::Permutation p(n, 42);
    std::set<uint64_t> seen;
    for (uint64_t i = 0; i < n; ++i) {
      const auto v = p(i);
      ASSERT_LT(v, n);
      seen.insert(v);
    }
    EXPECT_EQ(seen.size(), n) << "n = " << n;
  }
  EXPECT_THROW(pd::Permutation(10, 1)(10), std::out_of_range);
}

TEST(DatasetsPermutation, SameKeySameOrderOtherKeyAnotherAndWellMixed) {
  const uint64_t n = 10000;
  const pd::Permutation a(n, 7), b(n, 7), c(n, 8);
  uint64_t same = 0, fixed = 0, ascending = 0;
  for (uint64_t i = 0; i < n; ++i) {
    EXPECT_EQ(a(i), b(i));
    same += a(i) == c(i);
    fixed += a(i) == i;
    if (i > 0) ascending += a(i) > a(i - 1);
  }
  // A random permutation agrees with another, and with the identity, in about one place; rises about
  // half the time from one position to the next.
  EXPECT_LT(same, 10u);
  EXPECT_LT(fixed, 10u);
  EXPECT_NEAR(static_cast<double>(ascending) / (n - 1), 0.5, 0.03);
  // The first positions of a large permutation land all over the range, not near the start.
  const pd::Permutation big(uint64_t{1} << 40, 3);
  uint64_t high = 0;
  for (uint64_t i = 0; i < 1000; ++i) high += big(i) >= (uint64_t{1} << 39);
  EXPECT_NEAR(high / 1000.0, 0.5, 0.08);
}
