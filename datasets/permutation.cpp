#include "datasets/permutation.h"

#include <stdexcept>
#include <string>

namespace perceiver::datasets {
namespace {

constexpr int kRounds = 6;  // four make a strong pseudo-random permutation (Luby-Rackoff); two more for margin

// splitmix64's finaliser: every input bit reaches every output bit.
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

Permutation::Permutation(uint64_t n, uint64_t key) : n_(n), key_(mix(key)) {
  int bits = 2;
  while (bits < 64 && (uint64_t{1} << bits) < n) bits += 2;
  half_bits_ = bits / 2;
  half_mask_ = (uint64_t{1} << half_bits_) - 1;
}

uint64_t Permutation::network(uint64_t x) const {
  uint64_t left = x >> half_bits_, right = x & half_mask_;
  for (int round = 0; round < kRounds; ++round) {
    const uint64_t f = mix(key_ ^ mix((static_cast<uint64_t>(round) << 56) ^ right)) & half_mask_;
    const uint64_t next = left ^ f;
    left = right;
    right = next;
  }
  return (left << half_bits_) | right;
}

uint64_t Permutation::operator()(uint64_t i) const {
  if (i >= n_) throw std::out_of_range("Permutation: position " + std::to_string(i) + " outside [0, " + std::to_string(n_) + ")");
  // The network permutes [0, 4^k); walking the cycle from i until it lands below n restricts it to a
  // bijection of [0, n).
  uint64_t x = i;
  do {
    x = network(x);
  } while (x >= n_);
  return x;
}

}  // namespace perceiver::datasets
