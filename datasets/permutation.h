// A seeded bijection of [0, n) evaluated one position at a time: the shuffled order of a data set
// without an O(n) table, so that the loader's memory does not grow with the number of examples.
#pragma once

#include <cstdint>

namespace perceiver::datasets {

// A balanced Feistel network over the smallest power-of-four domain that holds n (at most 4n), with
// cycle walking back into [0, n): on average fewer than four network evaluations per position. The
// round function is a 64-bit mixer of (key, round, half), so different keys give unrelated orders.
class Permutation {
 public:
  Permutation(uint64_t n, uint64_t key);
  uint64_t size() const { return n_; }
  // The element at position i (i < size()).
  uint64_t operator()(uint64_t i) const;

 private:
  uint64_t network(uint64_t x) const;

  uint64_t n_;
  uint64_t key_;
  int half_bits_ = 0;
  uint64_t half_mask_ = 0;
};

}  // namespace perceiver::datasets
