// The PROXY protocol header (haproxy's doc/proxy-protocol.txt, v1 and v2): an incremental parser, no I/O.
//
// A listener that expects the header hands every byte a new connection sends
// to Feed until it says kDone or kError; the bytes after the header, in the
// same read or later, are the client's data. The parser keeps what it needs
// in fixed buffers (no allocation): the v1 line, the v2 address block, the
// UNIQUE_ID TLV; other TLVs are skipped as they pass, and a CRC32C TLV is
// checked over the whole header.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace rot13d {

// Which versions a listener accepts. The protocol must never be guessed:
// a listener either expects a header on every connection or on none.
enum class ProxyVersions : uint8_t { kV1 = 1, kV2 = 2, kAny = 3 };

// What a complete header says.
struct ProxyHeader {
  enum class Kind : uint8_t {
    kProxied,  // the addresses below are the client's and the address it connected to
    kLocal,    // v2 LOCAL: the proxy's own connection (a health check); use the real endpoints
    kUnknown,  // v1 UNKNOWN, or a v2 family or transport rot13d does not take: use the real endpoints
  };
  static constexpr size_t kMaxUniqueId = 128;

  Kind kind = Kind::kUnknown;
  uint8_t version = 0;  // 1 or 2
  size_t length = 0;    // bytes of the header on the wire
  // For kProxied: AF_INET, AF_INET6 or AF_UNIX addresses with their lengths.
  sockaddr_storage source{};
  socklen_t source_len = 0;
  sockaddr_storage destination{};
  socklen_t destination_len = 0;
  // PP2_TYPE_UNIQUE_ID: opaque bytes, up to 128.
  uint8_t unique_id_bytes[kMaxUniqueId] = {};
  size_t unique_id_len = 0;

  std::string_view unique_id() const {
    return {reinterpret_cast<const char*>(unique_id_bytes), unique_id_len};
  }
};

// CRC32c (Castagnoli, RFC 4960 appendix B) of `data`, continuing from `crc`
// (0 to start): the checksum of PP2_TYPE_CRC32C.
uint32_t Crc32c(std::span<const uint8_t> data, uint32_t crc = 0);

class ProxyHeaderParser {
 public:
  enum class State : uint8_t { kNeedMore, kDone, kError };
  // How a Feed went: the state after it, and how many of its bytes belong to
  // the header (all of them unless kDone; with kDone the rest is data).
  struct Progress {
    State state;
    size_t consumed;
  };

  explicit ProxyHeaderParser(ProxyVersions accept) : accept_(accept) {}

  // Takes the next bytes of the connection. After kDone or kError, further
  // calls change nothing and consume nothing.
  Progress Feed(std::span<const uint8_t> data);

  State state() const { return state_; }
  // With kDone: what the header said.
  const ProxyHeader& header() const { return header_; }
  // With kError: why, as a static string ("v2: unknown command 3").
  const char* error() const { return error_; }
  // With kError: the header was well formed but its CRC32C did not match.
  bool checksum_mismatch() const { return checksum_mismatch_; }

 private:
  // kV2Opaque: a LOCAL block whose family is not known, skipped whole.
  enum class Phase : uint8_t { kStart, kV1, kV2Fixed, kV2Addresses, kV2TlvHead, kV2TlvValue, kV2Opaque };
  // One byte; false once the state is no longer kNeedMore.
  bool Step(uint8_t byte);
  bool StepV1(uint8_t byte);
  bool StepV2Fixed(uint8_t byte);
  bool StepV2Tlv(uint8_t byte);
  bool FinishV1();
  bool FinishV2();
  bool Fail(const char* why) {
    state_ = State::kError;
    error_ = why;
    return false;
  }
  // The TLV's value starts: what to do with its bytes.
  bool StartTlvValue();
  size_t V2End() const { return 16 + v2_length_; }

  ProxyVersions accept_;
  State state_ = State::kNeedMore;
  Phase phase_ = Phase::kStart;
  const char* error_ = nullptr;
  bool checksum_mismatch_ = false;
  size_t position_ = 0;  // header bytes taken so far

  // v1: the line, CRLF included (107 bytes at most).
  static constexpr size_t kV1MaxLine = 107;
  uint8_t line_[kV1MaxLine] = {};

  // v2: the fixed 16 bytes, the address block, then the TLVs.
  uint8_t fixed_[16] = {};
  uint8_t command_ = 0;
  uint8_t family_ = 0;     // high nibble of byte 14
  uint8_t transport_ = 0;  // low nibble
  uint16_t v2_length_ = 0;
  size_t address_length_ = 0;  // of the address block the family defines (0 when ignored)
  uint8_t addresses_[216] = {};
  uint8_t tlv_head_[3] = {};
  size_t tlv_head_filled_ = 0;
  uint8_t tlv_type_ = 0;
  size_t tlv_left_ = 0;      // value bytes of the current TLV still to come
  size_t tlv_taken_ = 0;     // value bytes of the current TLV taken
  uint32_t crc_ = 0;         // CRC32c so far, with the checksum's own bytes as zeros
  uint8_t crc_sent_[4] = {};
  bool crc_present_ = false;
  bool unique_id_present_ = false;

  ProxyHeader header_;
};

}  // namespace rot13d
