// Google Benchmark: the rot13 transform on 64 KiB buffers against memcpy of the same size.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/rot13.h"

namespace {

constexpr size_t kSize = 64 * 1024;

// One buffer per benchmark, 64-byte aligned like the worker's read buffer, filled with text-like bytes.
struct Buffers {
  Buffers() : src(kSize + 64), dst(kSize + 64) {
    std::mt19937 rng(42);
    std::uniform_int_distribution<int> printable(32, 126);
    for (uint8_t& b : src) b = static_cast<uint8_t>(printable(rng));
  }
  uint8_t* Src() { return Align(src.data()); }
  uint8_t* Dst() { return Align(dst.data()); }
  static uint8_t* Align(uint8_t* p) {
    return reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t{63});
  }
  std::vector<uint8_t> src, dst;
};

void BM_Memcpy(benchmark::State& state) {
  Buffers b;
  for (auto _ : state) {
    std::memcpy(b.Dst(), b.Src(), kSize);
    benchmark::DoNotOptimize(b.Dst());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kSize);
}
BENCHMARK(BM_Memcpy);

void BM_Rot13InPlace(benchmark::State& state) {
  Buffers b;
  state.SetLabel(rot13d::Rot13ActiveName());
  for (auto _ : state) {
    rot13d::Rot13InPlace(b.Src(), kSize);
    benchmark::DoNotOptimize(b.Src());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kSize);
}
BENCHMARK(BM_Rot13InPlace);

// Each implementation on its own, at an aligned and an odd offset.
void BM_Impl(benchmark::State& state, const rot13d::Rot13Impl& impl, size_t offset) {
  if (!impl.supported) {
    state.SkipWithError((std::string(impl.name) + " not supported by this CPU").c_str());
    return;
  }
  Buffers b;
  for (auto _ : state) {
    impl.fn(b.Src() + offset, kSize);
    benchmark::DoNotOptimize(b.Src());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kSize);
}

const bool kRegistered = [] {
  for (const rot13d::Rot13Impl& impl : rot13d::Rot13Implementations()) {
    for (size_t offset : {size_t{0}, size_t{1}}) {
      std::string name = std::string("BM_Rot13_") + impl.name + (offset ? "/unaligned" : "/aligned");
      benchmark::RegisterBenchmark(name.c_str(), BM_Impl, impl, offset);
    }
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
