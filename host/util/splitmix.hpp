#pragma once
// SplitMix64 (Steele, Lea, Flood 2014): a seeded, platform-independent 64-bit mix, for the random
// targets (certify.cpp) and CLEVER's per-batch seeds (clever.cpp).
#include <cstdint>

namespace cnncert::detail {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace cnncert::detail
