// README.md, rot13d.toml(5) and etc/rot13d.toml list exactly the configuration table's keys, at their defaults.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/config_keys.h"

namespace rot13d {
namespace {

// The keys a document lists, each with its default as written there (TOML text).
struct Listing {
  std::map<std::string, std::string> defaults;
  std::vector<std::string> problems;  // what could not be read as a listing, key by key

  void Add(const std::string& key, const std::string& value) {
    if (!defaults.emplace(key, value).second) problems.push_back("'" + key + "' is listed twice");
  }
};

std::vector<std::string> Lines(std::string_view text) {
  std::vector<std::string> lines;
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string Trimmed(std::string_view s) {
  size_t begin = s.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return "";
  return std::string(s.substr(begin, s.find_last_not_of(" \t") - begin + 1));
}

// ---- README.md: the table under "## Configuration" -----------------------------

std::vector<std::string> Cells(const std::string& row) {
  std::vector<std::string> cells;
  std::istringstream in(row.substr(row.find('|') + 1));
  for (std::string cell; std::getline(in, cell, '|');) cells.push_back(Trimmed(cell));
  return cells;
}

// The `code` spans of a cell: the keys of a row (one or more), or its default.
std::vector<std::string> CodeSpans(const std::string& cell) {
  std::vector<std::string> spans;
  static const std::regex kSpan("`([^`]*)`");
  for (std::sregex_iterator it(cell.begin(), cell.end(), kSpan), end; it != end; ++it) spans.push_back((*it)[1]);
  return spans;
}

Listing ReadmeListing(std::string_view markdown) {
  Listing out;
  std::vector<std::string> lines = Lines(markdown);
  size_t i = 0;
  while (i < lines.size() && lines[i] != "## Configuration") ++i;
  while (i < lines.size() && !lines[i].starts_with("|")) ++i;
  if (i == lines.size()) {
    out.problems.push_back("no table under \"## Configuration\"");
    return out;
  }
  std::vector<std::string> header = Cells(lines[i]);
  auto column = [&](const char* name) {
    return static_cast<size_t>(std::find(header.begin(), header.end(), name) - header.begin());
  };
  size_t key_column = column("key"), default_column = column("default");
  if (key_column == header.size() || default_column == header.size()) {
    out.problems.push_back("the table has no \"key\" or no \"default\" column: " + lines[i]);
    return out;
  }
  for (i += 2; i < lines.size() && lines[i].starts_with("|"); ++i) {  // past the header and |---|
    std::vector<std::string> cells = Cells(lines[i]);
    if (cells.size() <= std::max(key_column, default_column)) {
      out.problems.push_back("a row without a default: " + lines[i]);
      continue;
    }
    std::vector<std::string> value = CodeSpans(cells[default_column]);
    for (const std::string& key : CodeSpans(cells[key_column])) out.Add(key, value.size() == 1 ? value[0] : "");
  }
  return out;
}

// ---- rot13d.toml(5): a `.TP` `.B key` entry under `.SH KEYS` each ----------------

// Roff escapes as the reader sees them.
std::string Unescaped(std::string text) {
  static const std::pair<const char*, const char*> kEscapes[] = {
      {"\\(dq", "\""}, {"\\(aq", "'"}, {"\\-", "-"}, {"\\&", ""}, {"\\fB", ""}, {"\\fI", ""}, {"\\fP", ""},
      {"\\fR", ""}, {"\\e", "\\"}};
  for (auto [escape, plain] : kEscapes) {
    for (size_t at = 0; (at = text.find(escape, at)) != std::string::npos; at += std::string_view(plain).size()) {
      text.replace(at, std::string_view(escape).size(), plain);
    }
  }
  return text;
}

// The first argument of a `.B` or `.BR` line: its whole text for .B, else up to a blank.
std::optional<std::string> BoldArgument(const std::string& line) {
  bool alternating = line.starts_with(".BR ");
  if (!alternating && !line.starts_with(".B ")) return std::nullopt;
  std::string rest = Trimmed(line.substr(alternating ? 4 : 3));
  if (rest.starts_with("\"")) return Unescaped(rest.substr(1, rest.find('"', 1) - 1));
  return Unescaped(alternating ? rest.substr(0, rest.find(' ')) : rest);
}

// An entry states its default as "...; default" ending a line, the value in bold on the next.
std::optional<std::string> ManDefault(const std::vector<std::string>& lines, size_t begin, size_t end) {
  for (size_t i = begin; i + 1 < end; ++i) {
    std::string line = Trimmed(lines[i]);
    if (line == "default" || line.ends_with(" default")) return BoldArgument(lines[i + 1]);
  }
  return std::nullopt;
}

Listing ManPageListing(std::string_view roff) {
  Listing out;
  std::vector<std::string> lines = Lines(roff);
  size_t begin = std::find(lines.begin(), lines.end(), ".SH KEYS") - lines.begin();
  size_t end = begin + 1;
  while (end < lines.size() && !lines[end].starts_with(".SH ")) ++end;
  if (begin == lines.size()) out.problems.push_back("no .SH KEYS section");
  for (size_t i = begin; i + 1 < end; ++i) {
    if (lines[i] != ".TP") continue;
    std::optional<std::string> key = BoldArgument(lines[i + 1]);
    if (!key) continue;  // a .TP that tags something else than a key
    size_t next = i + 1;
    while (next < end && lines[next] != ".TP") ++next;
    std::optional<std::string> value = ManDefault(lines, i + 2, next);
    if (!value) out.problems.push_back("'" + *key + "' states no default (\"default\" ending a line, then .B or .BR)");
    out.Add(*key, value.value_or(""));
  }
  return out;
}

// ---- etc/rot13d.toml: `key = value` lines, commented out or not --------------------

// Brackets opened and not closed, outside strings: an array that goes on.
int OpenBrackets(std::string_view text) {
  int open = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    if (in_string && text[i] == '\\') {
      ++i;
    } else if (text[i] == '"') {
      in_string = !in_string;
    } else if (!in_string) {
      open += text[i] == '[' ? 1 : text[i] == ']' ? -1 : 0;
    }
  }
  return open;
}

std::string Uncommented(const std::string& line) {
  std::string text = Trimmed(line);
  return text.starts_with("#") ? Trimmed(text.substr(1)) : text;
}

// A key the package sets on purpose shows its default commented out on the
// line just before: `#admin_listen = []` then `admin_listen = ["unix:..."]`.
Listing ShippedConfigListing(std::string_view toml) {
  Listing out;
  static const std::regex kAssignment(R"(([A-Za-z0-9_-]+)\s*=\s*(.*))");
  std::vector<std::string> lines = Lines(toml);
  std::string commented_key;  // the key of the line just before, if it was a commented-out assignment
  for (size_t i = 0; i < lines.size(); ++i) {
    std::smatch match;
    std::string text = Uncommented(lines[i]);
    bool commented = Trimmed(lines[i]).starts_with("#");
    if (!std::regex_match(text, match, kAssignment)) {
      commented_key.clear();
      continue;
    }
    std::string key = match[1], value = match[2];
    while (OpenBrackets(value) > 0 && i + 1 < lines.size()) value += " " + Uncommented(lines[++i]);
    if (!commented && key == commented_key) continue;  // the package's choice, after the default
    out.Add(key, value);
    commented_key = commented ? key : "";
  }
  return out;
}

// ---- Against the table -----------------------------------------------------------

// A default as written, read as the key's value and printed as --check-config would.
std::string Normalized(const ConfigKey& key, const std::string& written, std::string* error) {
  ConfigLoad load = ParseConfig(std::string(key.name) + " = " + written + "\n", "the default");
  if (!load.config) {
    *error = load.errors.empty() ? "not a value" : load.errors.front().message;
    return "";
  }
  return FormatConfigValue(key, *load.config);
}

std::vector<std::string> Disagreements(const Listing& listing) {
  std::vector<std::string> out = listing.problems;
  for (const ConfigKey& key : ConfigKeys()) {
    std::string name(key.name);
    auto it = listing.defaults.find(name);
    if (it == listing.defaults.end()) {
      out.push_back("key '" + name + "' is missing (default " + DefaultValue(key) + "; " + std::string(key.doc) + ")");
      continue;
    }
    std::string error;
    std::string value = Normalized(key, it->second, &error);
    if (!error.empty()) {
      out.push_back("key '" + name + "' has default `" + it->second + "`, which is no value of it: " + error);
    } else if (value != DefaultValue(key)) {
      out.push_back("key '" + name + "' has default `" + it->second + "`, but it is " + DefaultValue(key));
    }
  }
  for (const auto& [name, value] : listing.defaults) {
    if (!FindConfigKey(name)) out.push_back("'" + name + "' is not a configuration key");
  }
  return out;
}

std::string SourceFile(const std::string& path) {
  std::ifstream in(std::string(ROT13D_SOURCE_DIR) + "/" + path);
  EXPECT_TRUE(in) << "cannot read " << ROT13D_SOURCE_DIR << "/" << path;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void ExpectAgreement(const std::string& path, const Listing& listing) {
  for (const std::string& d : Disagreements(listing)) ADD_FAILURE() << path << ": " << d;
}

// ---- The documents -----------------------------------------------------------------

TEST(ConfigDocs, ReadmeTableListsEveryKeyWithItsDefault) {
  ExpectAgreement("README.md", ReadmeListing(SourceFile("README.md")));
}

TEST(ConfigDocs, ManPageListsEveryKeyWithItsDefault) {
  ExpectAgreement("packaging/man/rot13d.toml.5", ManPageListing(SourceFile("packaging/man/rot13d.toml.5")));
}

TEST(ConfigDocs, ShippedConfigShowsEveryKeyAtItsDefault) {
  ExpectAgreement("etc/rot13d.toml", ShippedConfigListing(SourceFile("etc/rot13d.toml")));
}

// ---- The readers and the comparison, on small samples ---------------------------------

TEST(ConfigDocsReaders, ShippedValueAfterItsCommentedDefaultIsThePackagesChoice) {
  Listing l = ShippedConfigListing("#admin_listen = []\nadmin_listen = [\"unix:/run/x.sock\"]\nworkers = 2\nworkers = 3\n");
  EXPECT_EQ(l.defaults["admin_listen"], "[]");
  EXPECT_EQ(l.problems, std::vector<std::string>{"'workers' is listed twice"});
}

TEST(ConfigDocsReaders, ReadmeRowMayNameSeveralKeys) {
  Listing l = ReadmeListing(
      "# x\n## Configuration\n\ntext\n\n| key | type | default | meaning |\n|---|---|---|---|\n"
      "| `backlog` | integer | `4096` | queue |\n| `socket_user`, `socket_group` | string | `\"\"` | owner |\n\n"
      "| `other` | table | `1` | not this one |\n");
  EXPECT_TRUE(l.problems.empty());
  EXPECT_EQ(l.defaults, (std::map<std::string, std::string>{
                            {"backlog", "4096"}, {"socket_user", "\"\""}, {"socket_group", "\"\""}}));
}

TEST(ConfigDocsReaders, ManPageDefaultOnItsOwnLineOrAfterTheType) {
  Listing l = ManPageListing(
      ".SH DESCRIPTION\n.TP\n.B backlog\nnot a key here\n.SH KEYS\n.TP\n.B listen\nArray; default\n"
      ".BR [\\(dq0.0.0.0:1067\\(dq] .\n.TP\n.B workers\nInteger or\n.BR \\(dqauto\\(dq ;\ndefault\n"
      ".BR \\(dqauto\\(dq .\n.B user\nin the text\n.TP\n.B group\nString; default\n.B \\(dq\\(dq\n(none).\n"
      ".TP\n.B backlog\nInteger.\n.SH FILES\n.TP\n.I /etc\n");
  EXPECT_EQ(l.defaults, (std::map<std::string, std::string>{{"listen", "[\"0.0.0.0:1067\"]"},
                                                            {"workers", "\"auto\""},
                                                            {"group", "\"\""},
                                                            {"backlog", ""}}));
  EXPECT_EQ(l.problems, std::vector<std::string>{
                            "'backlog' states no default (\"default\" ending a line, then .B or .BR)"});
}

TEST(ConfigDocsReaders, ShippedConfigCountsCommentedOutKeys) {
  Listing l = ShippedConfigListing(
      "# Prose: window 0 = no governor.\n# listen = [\"0.0.0.0:1067\"]\nbacklog = 4096  # queue\n"
      "#listen_more = [\n#   \"[::]:1\",\n# ]\nworkers = \"auto\"\n");
  EXPECT_TRUE(l.problems.empty());
  EXPECT_EQ(l.defaults, (std::map<std::string, std::string>{{"listen", "[\"0.0.0.0:1067\"]"},
                                                            {"backlog", "4096  # queue"},
                                                            {"listen_more", "[ \"[::]:1\", ]"},
                                                            {"workers", "\"auto\""}}));
}

TEST(ConfigDocsReaders, DisagreementsNameTheKey) {
  Listing l;
  for (const ConfigKey& key : ConfigKeys()) l.Add(std::string(key.name), DefaultValue(key));
  EXPECT_TRUE(Disagreements(l).empty());
  l.defaults["idle_timeout"] = "300.0";  // the same value, written otherwise
  EXPECT_TRUE(Disagreements(l).empty());

  l.defaults.erase("backlog");
  l.defaults["workers"] = "4";
  l.defaults["buffer_size"] = "\"64k\"";
  l.Add("colour", "\"blue\"");
  l.Add("group", "\"\"");
  EXPECT_EQ(Disagreements(l),
            (std::vector<std::string>{
                "'group' is listed twice",
                "key 'backlog' is missing (default 4096; queue length of each listening socket)",
                "key 'workers' has default `4`, but it is \"auto\"",
                "key 'buffer_size' has default `\"64k\"`, which is no value of it: "
                "'buffer_size': expected an integer, got string",
                "'colour' is not a configuration key",
            }));
}

}  // namespace
}  // namespace rot13d
