// A log-linear latency histogram in the manner of HdrHistogram: constant memory, about
// 1% relative precision from a nanosecond to hours, and exact count, maximum, mean and
// standard deviation.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace rot13d::client {

class Histogram {
 public:
  // Values below 2^kSubBits are exact; above, each power of two is split into
  // 2^(kSubBits-1) buckets, so a bucket is at most 1/64 of its values wide.
  static constexpr int kSubBits = 7;

  void Record(uint64_t value);
  void Merge(const Histogram& other);

  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }
  uint64_t min() const { return count_ == 0 ? 0 : min_; }
  double mean() const { return count_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(count_); }
  // The population standard deviation, from exact sums rather than buckets.
  double stddev() const;
  // The smallest recorded value v such that at least `quantile` of all values
  // are <= v, within the bucket precision (the highest value of its bucket,
  // never above the true maximum). 0 when empty.
  uint64_t ValueAtQuantile(double quantile) const;
  // Calls f(highest value of the bucket, count) for each bucket that holds a
  // value, lowest first: enough to merge runs elsewhere (the bucket bounds are
  // the same in every run) and find a quantile of them all, as
  // ValueAtQuantile would have over the merged histogram.
  template <typename F>
  void ForEachBucket(F&& f) const {
    for (int i = 0; i < kBuckets; ++i) {
      if (counts_[static_cast<std::size_t>(i)] != 0) f(BucketHighest(i), counts_[static_cast<std::size_t>(i)]);
    }
  }

  // Bucket arithmetic, public for the tests.
  static int BucketOf(uint64_t value);
  static uint64_t BucketHighest(int bucket);

 private:
  static constexpr int kHalf = 1 << (kSubBits - 1);
  static constexpr int kBuckets = (64 - kSubBits + 2) * kHalf;

  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t max_ = 0;
  uint64_t min_ = UINT64_MAX;
  // Sums of nanosecond latencies fit for centuries of total run time; their
  // squares for 10^12 values of an hour each.
  unsigned __int128 sum_ = 0;
  unsigned __int128 sum_squares_ = 0;
};

}  // namespace rot13d::client
