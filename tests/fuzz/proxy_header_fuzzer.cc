// libFuzzer target: bytes -> the PROXY protocol header parser, whole and in pieces, which must agree.
//
// Input: byte 0 picks the versions the listener takes (low 2 bits: 1 v1, 2
// v2, else both) and a piece size (the rest: 1..64, 0 meaning all at once);
// byte 1 seeds the piece sizes' variation. The rest is what the client sends.
//
// Checked: the parser fed everything at once and the parser fed in pieces
// end in the same state, take the same bytes and report the same header;
// NeedMore takes every byte offered, Done and Error are final; a Done header
// is no longer than the protocol allows (107 bytes for v1, 16 + 65535 for
// v2), its length is the bytes taken, its addresses are of a known family
// and its UNIQUE_ID at most 128 bytes; an Error says why.
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>

#include "common/proxy_protocol.h"

namespace rot13d {
namespace {

[[noreturn]] void Violated(const char* what) {
  std::fprintf(stderr, "proxy header fuzzer: %s\n", what);
  std::abort();
}

struct Run {
  ProxyHeaderParser::State state;
  size_t consumed = 0;
};

Run Feed(ProxyHeaderParser& p, std::span<const uint8_t> data, size_t piece, uint8_t jitter) {
  Run run{ProxyHeaderParser::State::kNeedMore};
  size_t at = 0;
  while (at < data.size()) {
    size_t n = piece == 0 ? data.size() - at : std::min(data.size() - at, piece + (jitter & 3));
    jitter = static_cast<uint8_t>(jitter * 37 + 11);
    auto progress = p.Feed(data.subspan(at, n));
    if (run.state != ProxyHeaderParser::State::kNeedMore && progress.consumed != 0) {
      Violated("bytes taken after Done or Error");
    }
    if (progress.consumed > n) Violated("took more bytes than offered");
    if (progress.state == ProxyHeaderParser::State::kNeedMore && progress.consumed != n) {
      Violated("NeedMore without taking every byte");
    }
    if (progress.state != ProxyHeaderParser::State::kNeedMore && progress.consumed == 0 &&
        run.state == ProxyHeaderParser::State::kNeedMore) {
      Violated("finished without taking a byte");
    }
    run.consumed += progress.consumed;
    run.state = progress.state;
    at += n;
  }
  return run;
}

bool KnownFamily(const sockaddr_storage& ss, socklen_t len) {
  switch (ss.ss_family) {
    case AF_INET: return len == sizeof(sockaddr_in);
    case AF_INET6: return len == sizeof(sockaddr_in6);
    case AF_UNIX: return len >= offsetof(sockaddr_un, sun_path) && len <= sizeof(sockaddr_un);
    default: return false;
  }
}

}  // namespace
}  // namespace rot13d

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace rot13d;
  using State = ProxyHeaderParser::State;
  if (size < 2) return 0;
  const uint8_t mode = data[0];
  const ProxyVersions versions = (mode & 3) == 1 ? ProxyVersions::kV1
                                 : (mode & 3) == 2 ? ProxyVersions::kV2
                                                   : ProxyVersions::kAny;
  const size_t piece = (mode >> 2) % 65;
  std::span<const uint8_t> bytes(data + 2, size - 2);

  ProxyHeaderParser whole(versions);
  Run a = Feed(whole, bytes, 0, 0);
  ProxyHeaderParser pieces(versions);
  Run b = Feed(pieces, bytes, piece == 0 ? 1 : piece, data[1]);

  if (a.state != b.state || a.consumed != b.consumed) Violated("whole and piecewise parses differ");
  if (a.state == State::kNeedMore && a.consumed != bytes.size()) Violated("NeedMore left bytes");
  if (a.state == State::kError) {
    if (!whole.error() || !pieces.error() || std::strcmp(whole.error(), pieces.error()) != 0) {
      Violated("errors differ or are missing");
    }
    if (whole.checksum_mismatch() != pieces.checksum_mismatch()) Violated("checksum verdicts differ");
  }
  if (a.state == State::kDone) {
    const ProxyHeader& h = whole.header();
    const ProxyHeader& g = pieces.header();
    if (h.length != a.consumed) Violated("header length is not the bytes taken");
    if (h.version == 1 ? h.length > 107 : h.version == 2 ? h.length > 16 + 65535 || h.length < 16 : true) {
      Violated("impossible header length for its version");
    }
    if ((h.version == 1 && versions == ProxyVersions::kV2) || (h.version == 2 && versions == ProxyVersions::kV1)) {
      Violated("a version the listener does not take");
    }
    if (h.kind != g.kind || h.version != g.version || h.unique_id() != g.unique_id() ||
        h.source_len != g.source_len || std::memcmp(&h.source, &g.source, sizeof h.source) != 0 ||
        std::memcmp(&h.destination, &g.destination, sizeof h.destination) != 0) {
      Violated("whole and piecewise headers differ");
    }
    if (h.unique_id_len > ProxyHeader::kMaxUniqueId) Violated("UNIQUE_ID too long");
    if (h.kind == ProxyHeader::Kind::kProxied &&
        (!KnownFamily(h.source, h.source_len) || !KnownFamily(h.destination, h.destination_len) ||
         h.source.ss_family != h.destination.ss_family)) {
      Violated("proxied addresses of an unknown or mixed family");
    }
  }
  return 0;
}
