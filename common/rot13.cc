#include "common/rot13.h"

#include <array>

#if defined(__x86_64__)
#include <immintrin.h>
#define ROT13D_X86_64 1
#endif

namespace rot13d {
namespace {

using Fn = void (*)(uint8_t*, size_t);

constexpr std::array<uint8_t, 256> MakeTable() {
  std::array<uint8_t, 256> t{};
  for (int i = 0; i < 256; ++i) t[i] = Rot13Byte(static_cast<uint8_t>(i));
  return t;
}

constexpr std::array<uint8_t, 256> kTable = MakeTable();

void Rot13Scalar(uint8_t* data, size_t n) {
  for (size_t i = 0; i < n; ++i) data[i] = kTable[data[i]];
}

#ifdef ROT13D_X86_64
// The vector kernels classify bytes with two signed compares. Setting the case
// bit (0x20) maps A-Z onto a-z and no other byte onto a-z; adding 31 then maps
// 'a'..'z' onto -128..-103 (signed), where "s < -115" is a-m (+13) and
// "s < -102" is any letter. Other byte values land elsewhere, since adding is a
// bijection mod 256. delta = (letter & -13) + (a-m & 26).
//
// Ends: the body runs on aligned vectors; the first and last vector are
// unaligned and overlap it. rot13 twice is the identity, so every byte must be
// computed from its original value: both ends are loaded before anything is
// stored, and their stores rewrite overlapped bytes with the same result.

inline __m128i Rot13Vec128(__m128i v) {
  const __m128i s = _mm_add_epi8(_mm_or_si128(v, _mm_set1_epi8(0x20)), _mm_set1_epi8(31));
  const __m128i letter = _mm_cmpgt_epi8(_mm_set1_epi8(-102), s);
  const __m128i first_half = _mm_cmpgt_epi8(_mm_set1_epi8(-115), s);
  const __m128i delta = _mm_add_epi8(_mm_and_si128(letter, _mm_set1_epi8(-13)),
                                     _mm_and_si128(first_half, _mm_set1_epi8(26)));
  return _mm_add_epi8(v, delta);
}

void Rot13Sse2(uint8_t* data, size_t n) {
  constexpr size_t kW = 16;
  if (n < kW) {
    Rot13Scalar(data, n);
    return;
  }
  uint8_t* const end = data + n;
  const __m128i head = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data));
  const __m128i tail = _mm_loadu_si128(reinterpret_cast<const __m128i*>(end - kW));
  auto* p = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(data) + kW) & ~uintptr_t{kW - 1});
  auto* const body_end = reinterpret_cast<uint8_t*>(reinterpret_cast<uintptr_t>(end) & ~uintptr_t{kW - 1});
  for (; p + 4 * kW <= body_end; p += 4 * kW) {
    auto* v = reinterpret_cast<__m128i*>(p);
    __m128i a = _mm_load_si128(v), b = _mm_load_si128(v + 1), c = _mm_load_si128(v + 2), d = _mm_load_si128(v + 3);
    _mm_store_si128(v, Rot13Vec128(a));
    _mm_store_si128(v + 1, Rot13Vec128(b));
    _mm_store_si128(v + 2, Rot13Vec128(c));
    _mm_store_si128(v + 3, Rot13Vec128(d));
  }
  for (; p + kW <= body_end; p += kW) {
    auto* v = reinterpret_cast<__m128i*>(p);
    _mm_store_si128(v, Rot13Vec128(_mm_load_si128(v)));
  }
  _mm_storeu_si128(reinterpret_cast<__m128i*>(data), Rot13Vec128(head));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(end - kW), Rot13Vec128(tail));
}

__attribute__((target("avx2"))) inline __m256i Rot13Vec256(__m256i v) {
  const __m256i s = _mm256_add_epi8(_mm256_or_si256(v, _mm256_set1_epi8(0x20)), _mm256_set1_epi8(31));
  const __m256i letter = _mm256_cmpgt_epi8(_mm256_set1_epi8(-102), s);
  const __m256i first_half = _mm256_cmpgt_epi8(_mm256_set1_epi8(-115), s);
  const __m256i delta = _mm256_add_epi8(_mm256_and_si256(letter, _mm256_set1_epi8(-13)),
                                        _mm256_and_si256(first_half, _mm256_set1_epi8(26)));
  return _mm256_add_epi8(v, delta);
}

__attribute__((target("avx2"))) void Rot13Avx2(uint8_t* data, size_t n) {
  constexpr size_t kW = 32;
  if (n < kW) {
    Rot13Sse2(data, n);
    return;
  }
  uint8_t* const end = data + n;
  const __m256i head = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(data));
  const __m256i tail = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(end - kW));
  auto* p = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(data) + kW) & ~uintptr_t{kW - 1});
  auto* const body_end = reinterpret_cast<uint8_t*>(reinterpret_cast<uintptr_t>(end) & ~uintptr_t{kW - 1});
  for (; p + 4 * kW <= body_end; p += 4 * kW) {
    auto* v = reinterpret_cast<__m256i*>(p);
    __m256i a = _mm256_load_si256(v), b = _mm256_load_si256(v + 1), c = _mm256_load_si256(v + 2),
            d = _mm256_load_si256(v + 3);
    _mm256_store_si256(v, Rot13Vec256(a));
    _mm256_store_si256(v + 1, Rot13Vec256(b));
    _mm256_store_si256(v + 2, Rot13Vec256(c));
    _mm256_store_si256(v + 3, Rot13Vec256(d));
  }
  for (; p + kW <= body_end; p += kW) {
    auto* v = reinterpret_cast<__m256i*>(p);
    _mm256_store_si256(v, Rot13Vec256(_mm256_load_si256(v)));
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(data), Rot13Vec256(head));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(end - kW), Rot13Vec256(tail));
}

bool CpuHasAvx2() {
  __builtin_cpu_init();  // may run before constructors that would otherwise do it
  return __builtin_cpu_supports("avx2");
}
#endif  // ROT13D_X86_64

const std::array<Rot13Impl, 3>& Impls() {
#ifdef ROT13D_X86_64
  static const std::array<Rot13Impl, 3> impls = {{
      {"scalar", Rot13Scalar, true},
      {"sse2", Rot13Sse2, true},  // part of the x86-64 baseline
      {"avx2", Rot13Avx2, CpuHasAvx2()},
  }};
#else
  static const std::array<Rot13Impl, 3> impls = {{
      {"scalar", Rot13Scalar, true},
      {"sse2", Rot13Scalar, false},
      {"avx2", Rot13Scalar, false},
  }};
#endif
  return impls;
}

// The last supported entry is the fastest.
const Rot13Impl& Active() {
  static const Rot13Impl& active = []() -> const Rot13Impl& {
    const auto& impls = Impls();
    for (size_t i = impls.size(); i-- > 1;) {
      if (impls[i].supported) return impls[i];
    }
    return impls[0];
  }();
  return active;
}

}  // namespace

void Rot13InPlace(uint8_t* data, size_t n) {
  static const Fn fn = Active().fn;
  fn(data, n);
}

std::span<const Rot13Impl> Rot13Implementations() { return Impls(); }

const char* Rot13ActiveName() { return Active().name; }

}  // namespace rot13d
