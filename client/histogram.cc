#include "client/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace rot13d::client {

int Histogram::BucketOf(uint64_t value) {
  if (value < (uint64_t{1} << kSubBits)) return static_cast<int>(value);
  // value >> shift lies in [kHalf, 2 * kHalf): the top kSubBits bits.
  int shift = std::bit_width(value) - kSubBits;
  return shift * kHalf + static_cast<int>(value >> shift);
}

uint64_t Histogram::BucketHighest(int bucket) {
  if (bucket < (1 << kSubBits)) return static_cast<uint64_t>(bucket);
  int shift = bucket / kHalf - 1;
  uint64_t top = static_cast<uint64_t>(bucket - shift * kHalf);
  return ((top + 1) << shift) - 1;
}

void Histogram::Record(uint64_t value) {
  ++counts_[static_cast<size_t>(BucketOf(value))];
  ++count_;
  max_ = std::max(max_, value);
  min_ = std::min(min_, value);
  sum_ += value;
  sum_squares_ += static_cast<unsigned __int128>(value) * value;
}

void Histogram::Merge(const Histogram& other) {
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  max_ = std::max(max_, other.max_);
  min_ = std::min(min_, other.min_);
  sum_ += other.sum_;
  sum_squares_ += other.sum_squares_;
}

double Histogram::stddev() const {
  if (count_ == 0) return 0.0;
  // E[x^2] - mean^2 cancels; in long double (a 64-bit mantissa) that loses
  // nothing visible unless the spread is below a millionth of the mean.
  const long double n = static_cast<long double>(count_);
  const long double mean = static_cast<long double>(sum_) / n;
  const long double variance = static_cast<long double>(sum_squares_) / n - mean * mean;
  return variance > 0 ? static_cast<double>(std::sqrt(variance)) : 0.0;
}

uint64_t Histogram::ValueAtQuantile(double quantile) const {
  if (count_ == 0) return 0;
  quantile = std::clamp(quantile, 0.0, 1.0);
  uint64_t rank = static_cast<uint64_t>(std::ceil(quantile * static_cast<double>(count_)));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(BucketHighest(static_cast<int>(i)), min(), max_);
  }
  return max_;
}

}  // namespace rot13d::client
