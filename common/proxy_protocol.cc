#include "common/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <array>
#include <cstring>

namespace rot13d {
namespace {

constexpr uint8_t kV2Signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr std::string_view kV1Prefix = "PROXY ";

// v2 commands, families, transports and TLV types (section 2.2).
constexpr uint8_t kLocal = 0x0, kProxy = 0x1;
constexpr uint8_t kUnspec = 0x0, kInet = 0x1, kInet6 = 0x2, kUnix = 0x3;
constexpr uint8_t kStream = 0x1, kMaxTransport = 0x2;
constexpr uint8_t kTypeCrc32c = 0x03, kTypeUniqueId = 0x05;

constexpr std::array<uint32_t, 256> MakeCrc32cTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // reflected Castagnoli
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = MakeCrc32cTable();

size_t AddressBlockLength(uint8_t family) {
  switch (family) {
    case kInet: return 12;
    case kInet6: return 36;
    case kUnix: return 216;
    default: return 0;
  }
}

// ---- v1 fields: exact forms only ------------------------------------------------

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// A decimal number within [0, max] without leading zeros.
bool ParseDecimal(std::string_view text, unsigned max, unsigned* out) {
  if (text.empty() || text.size() > 5 || (text.size() > 1 && text[0] == '0')) return false;
  unsigned value = 0;
  for (char c : text) {
    if (!IsDigit(c)) return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > max) return false;
  *out = value;
  return true;
}

// Exactly four decimal numbers 0..255, one dot apart, no leading zeros.
bool ParseIpv4(std::string_view text, in_addr* out) {
  uint8_t bytes[4];
  for (int i = 0; i < 4; ++i) {
    size_t dot = i < 3 ? text.find('.') : text.size();
    if (dot == std::string_view::npos || dot > 3) return false;
    unsigned v = 0;
    if (!ParseDecimal(text.substr(0, dot), 255, &v)) return false;
    bytes[i] = static_cast<uint8_t>(v);
    text.remove_prefix(i < 3 ? dot + 1 : dot);
  }
  std::memcpy(&out->s_addr, bytes, 4);
  return true;
}

// Hex groups and one "::" at most, 128 bits in all: inet_pton's IPv6 text
// (which also takes the dotted tail of "::ffff:192.0.2.1", the form a proxy
// writes for a v4-mapped address).
bool ParseIpv6(std::string_view text, in6_addr* out) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return false;
  char buf[INET6_ADDRSTRLEN];
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    bool ok = IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
    if (!ok) return false;
    buf[i] = c;
  }
  buf[text.size()] = '\0';
  return inet_pton(AF_INET6, buf, out) == 1;
}

// Splits "a b c d" at single spaces into exactly four non-empty fields.
bool SplitFour(std::string_view text, std::string_view fields[4]) {
  for (int i = 0; i < 4; ++i) {
    size_t space = i < 3 ? text.find(' ') : text.size();
    if (space == std::string_view::npos || space == 0) return false;
    fields[i] = text.substr(0, space);
    text.remove_prefix(i < 3 ? space + 1 : space);
  }
  return text.empty() && fields[3].find(' ') == std::string_view::npos;
}

void SetUnixAddress(const uint8_t* raw, sockaddr_storage* out, socklen_t* len) {
  auto* sun = reinterpret_cast<sockaddr_un*>(out);
  sun->sun_family = AF_UNIX;
  std::memcpy(sun->sun_path, raw, sizeof sun->sun_path);
  size_t used = sizeof sun->sun_path;
  while (used > 0 && raw[used - 1] == 0) --used;  // trailing NULs: padding, or the terminator
  if (used > 0 && raw[0] != 0 && used < sizeof sun->sun_path) ++used;  // a path keeps its terminator
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + used);
}

}  // namespace

uint32_t Crc32c(std::span<const uint8_t> data, uint32_t crc) {
  crc = ~crc;
  for (uint8_t b : data) crc = kCrc32cTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

ProxyHeaderParser::Progress ProxyHeaderParser::Feed(std::span<const uint8_t> data) {
  if (state_ != State::kNeedMore) return {state_, 0};
  size_t taken = 0;
  while (taken < data.size()) {
    bool more = Step(data[taken]);
    ++taken;
    if (!more) break;
  }
  return {state_, taken};
}

bool ProxyHeaderParser::Step(uint8_t byte) {
  ++position_;
  switch (phase_) {
    case Phase::kStart: {
      bool v1 = static_cast<uint8_t>(accept_) & static_cast<uint8_t>(ProxyVersions::kV1);
      bool v2 = static_cast<uint8_t>(accept_) & static_cast<uint8_t>(ProxyVersions::kV2);
      if (byte == kV1Prefix[0] && v1) {
        phase_ = Phase::kV1;
        return StepV1(byte);
      }
      if (byte == kV2Signature[0] && v2) {
        phase_ = Phase::kV2Fixed;
        return StepV2Fixed(byte);
      }
      if (byte == kV1Prefix[0]) return Fail("a v1 header on a listener that takes v2 only");
      if (byte == kV2Signature[0]) return Fail("a v2 header on a listener that takes v1 only");
      return Fail("not a PROXY protocol header");
    }
    case Phase::kV1: return StepV1(byte);
    case Phase::kV2Fixed: return StepV2Fixed(byte);
    default: return StepV2Tlv(byte);
  }
}

bool ProxyHeaderParser::StepV1(uint8_t byte) {
  const size_t at = position_ - 1;
  line_[at] = byte;
  if (at < kV1Prefix.size()) {
    return byte == static_cast<uint8_t>(kV1Prefix[at]) || Fail("v1: the line does not start with \"PROXY \"");
  }
  if (byte == '\n') return line_[at - 1] == '\r' ? FinishV1() : Fail("v1: LF without CR");
  if (line_[at - 1] == '\r') return Fail("v1: CR without LF");
  if (position_ == kV1MaxLine) return Fail("v1: no CRLF within 107 bytes");
  return true;
}

bool ProxyHeaderParser::FinishV1() {
  std::string_view rest(reinterpret_cast<const char*>(line_) + kV1Prefix.size(), position_ - kV1Prefix.size() - 2);
  header_.version = 1;
  header_.length = position_;
  if (rest.starts_with("UNKNOWN")) {
    // "the receiver must ignore anything presented before the CRLF"
    if (rest.size() > 7 && rest[7] != ' ') return Fail("v1: unknown protocol");
    header_.kind = ProxyHeader::Kind::kUnknown;
    state_ = State::kDone;
    return false;
  }
  bool tcp4 = rest.starts_with("TCP4 ");
  if (!tcp4 && !rest.starts_with("TCP6 ")) return Fail("v1: unknown protocol");
  std::string_view fields[4];
  if (!SplitFour(rest.substr(5), fields)) return Fail("v1: expected SOURCE DESTINATION SPORT DPORT, one space apart");
  unsigned ports[2];
  if (!ParseDecimal(fields[2], 65535, &ports[0]) || !ParseDecimal(fields[3], 65535, &ports[1])) {
    return Fail("v1: invalid port");
  }
  sockaddr_storage* ends[2] = {&header_.source, &header_.destination};
  socklen_t* lens[2] = {&header_.source_len, &header_.destination_len};
  for (int i = 0; i < 2; ++i) {
    if (tcp4) {
      auto* sin = reinterpret_cast<sockaddr_in*>(ends[i]);
      if (!ParseIpv4(fields[i], &sin->sin_addr)) return Fail("v1: invalid IPv4 address");
      sin->sin_family = AF_INET;
      sin->sin_port = htons(static_cast<uint16_t>(ports[i]));
      *lens[i] = sizeof(sockaddr_in);
    } else {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(ends[i]);
      if (!ParseIpv6(fields[i], &sin6->sin6_addr)) return Fail("v1: invalid IPv6 address");
      sin6->sin6_family = AF_INET6;
      sin6->sin6_port = htons(static_cast<uint16_t>(ports[i]));
      *lens[i] = sizeof(sockaddr_in6);
    }
  }
  header_.kind = ProxyHeader::Kind::kProxied;
  state_ = State::kDone;
  return false;
}

bool ProxyHeaderParser::StepV2Fixed(uint8_t byte) {
  const size_t at = position_ - 1;
  fixed_[at] = byte;
  crc_ = Crc32c({&byte, 1}, crc_);
  if (at < sizeof kV2Signature) return byte == kV2Signature[at] || Fail("v2: invalid signature");
  if (at == 12) {
    if (byte >> 4 != 2) return Fail("v2: version is not 2");
    command_ = byte & 0x0F;
    return command_ == kLocal || command_ == kProxy || Fail("v2: unknown command");
  }
  if (at == 13) {
    family_ = byte >> 4;
    transport_ = byte & 0x0F;
    // LOCAL ignores the family; PROXY must name a known one.
    bool known = family_ <= kUnix && transport_ <= kMaxTransport;
    return known || command_ == kLocal || Fail("v2: unknown address family or transport");
  }
  if (at < 15) return true;
  v2_length_ = static_cast<uint16_t>(fixed_[14] << 8 | fixed_[15]);
  bool known = family_ <= kUnix && transport_ <= kMaxTransport;
  address_length_ = known ? AddressBlockLength(family_) : 0;
  if (v2_length_ < address_length_) {
    if (command_ == kProxy) return Fail("v2: address block shorter than its family needs");
    known = false;  // LOCAL: the block is discarded whatever it holds
  }
  if (!known) {
    address_length_ = 0;
    phase_ = Phase::kV2Opaque;
  } else {
    phase_ = address_length_ > 0 ? Phase::kV2Addresses : Phase::kV2TlvHead;
  }
  return position_ == V2End() ? FinishV2() : true;
}

bool ProxyHeaderParser::StepV2Tlv(uint8_t byte) {
  const size_t at = position_ - 1;
  switch (phase_) {
    case Phase::kV2Opaque:
      crc_ = Crc32c({&byte, 1}, crc_);
      break;
    case Phase::kV2Addresses:
      crc_ = Crc32c({&byte, 1}, crc_);
      addresses_[at - 16] = byte;
      if (position_ == 16 + address_length_) phase_ = Phase::kV2TlvHead;
      break;
    case Phase::kV2TlvHead:
      crc_ = Crc32c({&byte, 1}, crc_);
      tlv_head_[tlv_head_filled_++] = byte;
      if (tlv_head_filled_ == sizeof tlv_head_) {
        tlv_head_filled_ = 0;
        tlv_type_ = tlv_head_[0];
        tlv_left_ = static_cast<size_t>(tlv_head_[1] << 8 | tlv_head_[2]);
        tlv_taken_ = 0;
        if (position_ + tlv_left_ > V2End()) return Fail("v2: a TLV runs past the end of the header");
        if (!StartTlvValue()) return false;
        if (tlv_left_ > 0) phase_ = Phase::kV2TlvValue;
      } else if (position_ == V2End()) {
        return Fail("v2: a TLV cut short by the end of the header");
      }
      break;
    case Phase::kV2TlvValue: {
      uint8_t counted = byte;
      if (tlv_type_ == kTypeCrc32c) {
        crc_sent_[tlv_taken_] = byte;
        counted = 0;  // the checksum is computed with its own field as zeros
      } else if (tlv_type_ == kTypeUniqueId) {
        header_.unique_id_bytes[tlv_taken_] = byte;
      }
      crc_ = Crc32c({&counted, 1}, crc_);
      ++tlv_taken_;
      if (--tlv_left_ == 0) phase_ = Phase::kV2TlvHead;
      break;
    }
    default: break;
  }
  return position_ == V2End() ? FinishV2() : true;
}

bool ProxyHeaderParser::StartTlvValue() {
  if (tlv_type_ == kTypeCrc32c) {
    if (tlv_left_ != 4) return Fail("v2: a CRC32C TLV whose length is not 4");
    if (crc_present_) return Fail("v2: two CRC32C TLVs");
    crc_present_ = true;
  } else if (tlv_type_ == kTypeUniqueId) {
    if (tlv_left_ > ProxyHeader::kMaxUniqueId) return Fail("v2: a UNIQUE_ID TLV longer than 128 bytes");
    if (unique_id_present_) return Fail("v2: two UNIQUE_ID TLVs");
    unique_id_present_ = true;
    header_.unique_id_len = tlv_left_;
  }
  return true;
}

bool ProxyHeaderParser::FinishV2() {
  if (crc_present_) {
    uint32_t sent = static_cast<uint32_t>(crc_sent_[0]) << 24 | static_cast<uint32_t>(crc_sent_[1]) << 16 |
                    static_cast<uint32_t>(crc_sent_[2]) << 8 | crc_sent_[3];
    if (sent != crc_) {
      checksum_mismatch_ = true;
      return Fail("v2: CRC32C mismatch");
    }
  }
  header_.version = 2;
  header_.length = position_;
  if (command_ == kLocal) {
    header_.kind = ProxyHeader::Kind::kLocal;
  } else if (transport_ != kStream || family_ == kUnspec) {
    header_.kind = ProxyHeader::Kind::kUnknown;  // a receiver falls back to UNSPEC for what it does not take
  } else {
    header_.kind = ProxyHeader::Kind::kProxied;
    const uint8_t* a = addresses_;
    if (family_ == kInet || family_ == kInet6) {
      const size_t n = family_ == kInet ? 4 : 16;
      const uint8_t* ports = a + 2 * n;
      sockaddr_storage* ends[2] = {&header_.source, &header_.destination};
      socklen_t* lens[2] = {&header_.source_len, &header_.destination_len};
      for (size_t i = 0; i < 2; ++i) {
        uint16_t port_be;
        std::memcpy(&port_be, ports + 2 * i, 2);  // network order, as sockaddr wants it
        if (family_ == kInet) {
          auto* sin = reinterpret_cast<sockaddr_in*>(ends[i]);
          sin->sin_family = AF_INET;
          std::memcpy(&sin->sin_addr, a + n * i, n);
          sin->sin_port = port_be;
          *lens[i] = sizeof(sockaddr_in);
        } else {
          auto* sin6 = reinterpret_cast<sockaddr_in6*>(ends[i]);
          sin6->sin6_family = AF_INET6;
          std::memcpy(&sin6->sin6_addr, a + n * i, n);
          sin6->sin6_port = port_be;
          *lens[i] = sizeof(sockaddr_in6);
        }
      }
    } else {
      SetUnixAddress(a, &header_.source, &header_.source_len);
      SetUnixAddress(a + 108, &header_.destination, &header_.destination_len);
    }
  }
  state_ = State::kDone;
  return false;
}

}  // namespace rot13d
