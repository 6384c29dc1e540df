// Reading and writing vitc spec files (TOML, through toml++).
#include "frontend/spec.h"

#include <filesystem>
#include <functional>

#include <toml++/toml.h>

#include "support/files.h"

namespace vitc::frontend {
namespace {

Loc locOf(const Loc &file, const toml::source_region &r) {
  return file.at(static_cast<int>(r.begin.line), static_cast<int>(r.begin.column));
}

std::string_view nodeTypeName(const toml::node &n) {
  if (n.is_integer())
    return "an integer";
  if (n.is_floating_point())
    return "a number";
  if (n.is_boolean())
    return "a boolean";
  if (n.is_string())
    return "a string";
  if (n.is_array())
    return "an array";
  if (n.is_table())
    return "a table";
  return "a date or time";
}

// One key of the spec: where it lives and how to store it.
struct KeyRule {
  std::string_view table; // "" for the top level
  std::string_view key;
  std::function<Status(const toml::node &, const Loc &, ModelConfig &)> apply;
};

Status needInt(const toml::node &n, const Loc &at, std::string_view key, int64_t &out) {
  if (!n.is_integer())
    return makeError(at, "'{}' must be an integer, not {}", key, nodeTypeName(n));
  out = *n.value<int64_t>();
  return Status::ok();
}

Status needBool(const toml::node &n, const Loc &at, std::string_view key, bool &out) {
  if (!n.is_boolean())
    return makeError(at, "'{}' must be true or false, not {}", key, nodeTypeName(n));
  out = *n.value<bool>();
  return Status::ok();
}

Status needNumber(const toml::node &n, const Loc &at, std::string_view key, double &out) {
  if (!n.is_number())
    return makeError(at, "'{}' must be a number, not {}", key, nodeTypeName(n));
  out = *n.value<double>();
  return Status::ok();
}

// The same for a [train] value, which stays unset unless written; numbers must not be negative.
template <typename T>
Status needOptional(const toml::node &n, const Loc &at, std::string_view key,
                    std::optional<T> &out) {
  T value{};
  if constexpr (std::is_same_v<T, int64_t>)
    VITC_TRY(needInt(n, at, key, value));
  else
    VITC_TRY(needNumber(n, at, key, value));
  if (value < 0)
    return makeError(at, "'{}' must not be negative", key);
  out = value;
  return Status::ok();
}

Status needWord(const toml::node &n, const Loc &at, std::string_view key,
                std::initializer_list<std::string_view> words, std::optional<std::string> &out) {
  std::string known;
  for (std::string_view w : words)
    known += (known.empty() ? "\"" : ", \"") + std::string(w) + "\"";
  if (!n.is_string())
    return makeError(at, "'{}' must be one of {}, not {}", key, known, nodeTypeName(n));
  std::string s = *n.value<std::string>();
  for (std::string_view w : words)
    if (s == w) {
      out = s;
      return Status::ok();
    }
  return makeError(at, "bad value \"{}\" for '{}': expected one of {}", s, key, known);
}

// [image] mean and std: one positive (std) or any (mean) number per channel, or one for all.
Status needChannelValues(const toml::node &n, const Loc &at, std::string_view key, bool positive,
                         std::vector<double> &out) {
  const toml::array *a = n.as_array();
  if (!a || a->empty())
    return makeError(at, "'{}' must be a non-empty array of numbers, not {}", key,
                     nodeTypeName(n));
  out.clear();
  for (const toml::node &e : *a) {
    if (!e.is_number())
      return makeError(at, "'{}' must be an array of numbers", key);
    out.push_back(*e.value<double>());
    if (positive && !(out.back() > 0))
      return makeError(at, "'{}' values must be positive", key);
  }
  return Status::ok();
}

template <typename Enum>
Status needChoice(const toml::node &n, const Loc &at, std::string_view key,
                  std::initializer_list<std::pair<std::string_view, Enum>> choices, Enum &out) {
  std::string known;
  for (const auto &[name, value] : choices)
    known += (known.empty() ? "\"" : ", \"") + std::string(name) + "\"";
  if (!n.is_string())
    return makeError(at, "'{}' must be one of {}, not {}", key, known, nodeTypeName(n));
  std::string s = *n.value<std::string>();
  for (const auto &[name, value] : choices)
    if (s == name) {
      out = value;
      return Status::ok();
    }
  return makeError(at, "bad value \"{}\" for '{}': expected one of {}", s, key, known);
}

const std::vector<KeyRule> &keyRules() {
  using N = const toml::node &;
  using L = const Loc &;
  using C = ModelConfig &;
  static const std::vector<KeyRule> rules = {
      {"", "name",
       [](N n, L at, C c) -> Status {
         if (!n.is_string())
           return makeError(at, "'name' must be a string, not {}", nodeTypeName(n));
         c.name = *n.value<std::string>();
         return Status::ok();
       }},
      {"image", "size", [](N n, L at, C c) { return needInt(n, at, "size", c.image); }},
      {"image", "patch", [](N n, L at, C c) { return needInt(n, at, "patch", c.patch); }},
      {"image", "channels", [](N n, L at, C c) { return needInt(n, at, "channels", c.channels); }},
      {"image", "mean",
       [](N n, L at, C c) { return needChannelValues(n, at, "mean", false, c.mean); }},
      {"image", "std",
       [](N n, L at, C c) { return needChannelValues(n, at, "std", true, c.std); }},
      {"encoder", "width", [](N n, L at, C c) { return needInt(n, at, "width", c.width); }},
      {"encoder", "depth", [](N n, L at, C c) { return needInt(n, at, "depth", c.depth); }},
      {"encoder", "mlp", [](N n, L at, C c) { return needInt(n, at, "mlp", c.mlp); }},
      {"encoder", "heads", [](N n, L at, C c) { return needInt(n, at, "heads", c.heads); }},
      {"encoder", "block",
       [](N n, L at, C c) {
         return needChoice<BlockKind>(
             n, at, "block",
             {{"sequential", BlockKind::Sequential}, {"parallel", BlockKind::Parallel}}, c.block);
       }},
      {"encoder", "qk_norm", [](N n, L at, C c) { return needBool(n, at, "qk_norm", c.qkNorm); }},
      {"encoder", "gelu",
       [](N n, L at, C c) {
         return needChoice<GeluKind>(n, at, "gelu",
                                     {{"erf", GeluKind::Erf}, {"tanh", GeluKind::Tanh}}, c.gelu);
       }},
      {"encoder", "eps",
       [](N n, L at, C c) -> Status {
         if (!n.is_number())
           return makeError(at, "'eps' must be a number, not {}", nodeTypeName(n));
         c.eps = *n.value<double>();
         return Status::ok();
       }},
      {"bias", "qkv", [](N n, L at, C c) { return needBool(n, at, "qkv", c.biasQkv); }},
      {"bias", "out", [](N n, L at, C c) { return needBool(n, at, "out", c.biasOut); }},
      {"bias", "mlp", [](N n, L at, C c) { return needBool(n, at, "mlp", c.biasMlp); }},
      {"bias", "norm", [](N n, L at, C c) { return needBool(n, at, "norm", c.biasNorm); }},
      {"head", "pool",
       [](N n, L at, C c) {
         return needChoice<PoolKind>(
             n, at, "pool",
             {{"token", PoolKind::Token}, {"gap", PoolKind::Gap}, {"map", PoolKind::Map}}, c.pool);
       }},
      {"head", "classes", [](N n, L at, C c) { return needInt(n, at, "classes", c.classes); }},
      {"head", "labels",
       [](N n, L at, C c) -> Status {
         const toml::array *a = n.as_array();
         if (!a)
           return makeError(at, "'labels' must be an array of strings, not {}", nodeTypeName(n));
         c.labels.clear();
         for (const toml::node &e : *a) {
           if (!e.is_string())
             return makeError(at, "'labels' must be an array of strings");
           c.labels.push_back(*e.value<std::string>());
         }
         return Status::ok();
       }},
      {"train", "optimizer",
       [](N n, L at, C c) {
         return needWord(n, at, "optimizer", {"sgd", "adamw", "adafactor"}, c.train.optimizer);
       }},
      {"train", "schedule",
       [](N n, L at, C c) {
         return needWord(n, at, "schedule", {"constant", "cosine", "rsqrt"}, c.train.schedule);
       }},
      {"train", "augment",
       [](N n, L at, C c) {
         return needWord(n, at, "augment", {"none", "flip", "crop", "crop-flip"}, c.train.augment);
       }},
      {"train", "lr", [](N n, L at, C c) { return needOptional(n, at, "lr", c.train.lr); }},
      {"train", "weight_decay",
       [](N n, L at, C c) { return needOptional(n, at, "weight_decay", c.train.weightDecay); }},
      {"train", "clip", [](N n, L at, C c) { return needOptional(n, at, "clip", c.train.clip); }},
      {"train", "label_smoothing",
       [](N n, L at, C c) {
         return needOptional(n, at, "label_smoothing", c.train.labelSmoothing);
       }},
      {"train", "momentum",
       [](N n, L at, C c) { return needOptional(n, at, "momentum", c.train.momentum); }},
      {"train", "batch", [](N n, L at, C c) { return needOptional(n, at, "batch", c.train.batch); }},
      {"train", "epochs",
       [](N n, L at, C c) { return needOptional(n, at, "epochs", c.train.epochs); }},
      {"train", "steps", [](N n, L at, C c) { return needOptional(n, at, "steps", c.train.steps); }},
      {"train", "warmup",
       [](N n, L at, C c) { return needOptional(n, at, "warmup", c.train.warmup); }},
      {"train", "cooldown",
       [](N n, L at, C c) { return needOptional(n, at, "cooldown", c.train.cooldown); }},
  };
  return rules;
}

std::string knownKeys(std::string_view table) {
  std::string out;
  for (const KeyRule &r : keyRules())
    if (r.table == table && !r.key.empty())
      out += (out.empty() ? "" : ", ") + std::string(r.key);
  return out;
}

Status applyTable(const toml::table &t, std::string_view tableName, const Loc &file,
                  ModelConfig &c) {
  for (auto &&[key, node] : t) {
    Loc keyAt = locOf(file, key.source());
    std::string k(key.str());
    if (tableName.empty() && node.is_table()) {
      bool knownTable = false;
      for (const KeyRule &r : keyRules())
        knownTable |= r.table == k;
      if (!knownTable)
        return makeError(keyAt, "unknown table [{}] (known: [image], [encoder], [bias], [head], [train])",
                         k);
      VITC_TRY(applyTable(*node.as_table(), k, file, c));
      continue;
    }
    const KeyRule *rule = nullptr;
    for (const KeyRule &r : keyRules())
      if (r.table == tableName && r.key == k)
        rule = &r;
    if (!rule) {
      std::string where =
          tableName.empty() ? "at the top level" : fmt::format("in [{}]", tableName);
      return makeError(keyAt, "unknown key '{}' {} (known: {})", k, where,
                       tableName.empty() ? "name, and the tables [image], [encoder], [bias], [head], [train]"
                                         : knownKeys(tableName));
    }
    Loc valueAt = locOf(file, node.source());
    VITC_TRY(rule->apply(node, valueAt, c));
    // Field names as ModelConfig::locOf knows them: [image] size is "image", [bias] keys are
    // qualified because [encoder] has an "mlp" too.
    std::string field = tableName == "image" && k == "size" ? "image"
                        : tableName == "bias" || tableName == "train" ? std::string(tableName) + "." + k
                                                                      : k;
    c.keyLocs[field] = valueAt;
  }
  return Status::ok();
}

// Whether toml++ would scan a non-ASCII character reading the bare value (a number, boolean or
// date) that starts at `i`: it reads on to a value terminator, at most 127 characters (over
// quotes too: `1"é"` is one bad token to it), and past one space after a 10-character date; when
// a digit follows that space it takes the character after the digit without asking whether it
// ends the value (`1979-05-27 0#é` reads on into the comment).
bool bareValueHasNonAscii(std::string_view text, size_t i) {
  constexpr size_t kScan = 128 * 4; // toml++'s history of 128 characters, in UTF-8 bytes at most
  auto terminates = [](char c) {
    return (c >= '\n' && c <= '\r') ||
           std::string_view(" \t]},#").find(c) != std::string_view::npos;
  };
  auto digit = [&](size_t j) { return j < text.size() && text[j] >= '0' && text[j] <= '9'; };
  size_t start = i;
  bool timeRead = false;
  for (size_t j = i; j < text.size() && j - start < kScan; ++j) {
    if (text[j] & 0x80)
      return true;
    if (!terminates(text[j]))
      continue;
    if (text[j] == ' ' && j - i == 10 && !timeRead) {
      timeRead = true;
      if (digit(j + 1)) {
        j += 2; // the digit, and the character after it whatever it is
        if (j < text.size() && (text[j] & 0x80))
          return true;
      }
      continue;
    }
    return false;
  }
  return false;
}

// toml++ 3.3 mishandles some input instead of reporting it: it builds the tables of a dotted key
// (`a.b.c = 1`, `[a.b.c]`) recursively with no limit, so a long enough key overflows the stack;
// and whether some non-ASCII characters are whitespace is undefined behaviour in it
// (marzer/tomlplusplus#295), which it asks of characters outside strings, of every character of a
// bare value up to where it ends, and after a backslash in a multi-line basic string. A spec needs
// none of these: refuse them before toml++ sees them.
Status checkBeforeToml(std::string_view text, const Loc &file) {
  constexpr int kMaxDots = 64; // dots and braces per line; a spec nests tables one level deep
  int line = 1, dots = 0;
  char last = '\n'; // the last character that was not white space, a comment or in a string
  auto nonAscii = [&](size_t i) { return i < text.size() && (text[i] & 0x80); };
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\n') {
      ++line;
      dots = 0;
      last = c;
    } else if (nonAscii(i)) {
      return makeError(file.at(line, 0), "non-ASCII character outside a string");
    } else if (c == '#') {
      while (i + 1 < text.size() && text[i + 1] != '\n')
        ++i;
    } else if ((c == '"' || c == '\'') &&
               std::string_view("\n=[,{.").find(last) != std::string_view::npos) {
      // A string where a key or a value starts (elsewhere a quote is part of a bad token, which
      // toml++ reads on). An unterminated one is toml++'s to report.
      std::string_view quotes = c == '"' ? R"(""")" : "'''";
      bool multiLine = text.substr(i, 3) == quotes;
      std::string_view close = multiLine ? quotes : quotes.substr(0, 1);
      size_t j = i + close.size();
      while (j < text.size() && text.substr(j, close.size()) != close &&
             (multiLine || text[j] != '\n')) {
        if (c == '"' && text[j] == '\\' && j + 1 < text.size()) {
          ++j; // the escaped character, perhaps a quote
          if (multiLine) {
            // A line-ending backslash: toml++ skips the white space after it, character by one.
            size_t k = j;
            while (k < text.size() &&
                   std::string_view(" \t\r\n").find(text[k]) != std::string_view::npos)
              line += text[k++] == '\n';
            if (nonAscii(j) || (k > j && nonAscii(k)))
              return makeError(file.at(line, 0),
                               "non-ASCII character after a backslash in a multi-line string");
            if (k > j) {
              j = k;
              continue;
            }
          }
        }
        line += text[j] == '\n';
        ++j;
      }
      // Go on after the closing quotes, or at the line break that ends a one-line string.
      i = j < text.size() && text[j] == '\n' ? j - 1 : j + close.size() - 1;
      last = c;
    } else if (c != ' ' && c != '\t' && c != '\r') {
      if (std::string_view("=[,").find(last) != std::string_view::npos &&
          std::string_view("[]{},").find(c) == std::string_view::npos &&
          bareValueHasNonAscii(text, i))
        return makeError(file.at(line, 0), "non-ASCII character in a value");
      if ((c == '.' || c == '{') && ++dots > kMaxDots)
        return makeError(file.at(line, 0),
                         "keys nest too deeply (a spec has tables one level deep)");
      last = c;
    }
  }
  return Status::ok();
}

} // namespace

Expected<ModelConfig> parseSpec(std::string_view text, const std::string &path) {
  ModelConfig c;
  c.file = Loc::inFile(path);
  c.name = std::filesystem::path(path).stem().string();
  VITC_TRY(checkBeforeToml(text, c.file));
  toml::table table;
  try {
    table = toml::parse(text, path);
  } catch (const toml::parse_error &e) {
    std::string message(e.description());
    if (!message.empty())
      message[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(message[0])));
    while (!message.empty() && (message.back() == '.' || message.back() == '\n'))
      message.pop_back();
    return Error(locOf(c.file, e.source()), message);
  }
  VITC_TRY(applyTable(table, "", c.file, c));
  bool mlpGiven = c.keyLocs.count("mlp") > 0;
  for (const char *required : {"width", "depth", "heads"})
    if (!c.keyLocs.count(required))
      return makeError(c.file, "missing key '{}' in [encoder]", required);
  if (!mlpGiven && c.width > 0 && c.width <= (1 << 20)) // validate() refuses other widths
    c.mlp = 4 * c.width;
  VITC_TRY(validate(c));
  return c;
}

Expected<ModelConfig> readSpecFile(const std::string &path) {
  VITC_ASSIGN(std::string text, readFile(path));
  return parseSpec(text, path);
}

namespace {

// A TOML basic string: quotes, backslashes and control characters escaped.
std::string tomlString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\')
      out += {'\\', c};
    else if (c == '\n')
      out += "\\n";
    else if (u < 0x20 || u == 0x7f)
      out += fmt::format("\\u{:04x}", u);
    else
      out += c;
  }
  return out + '"';
}

} // namespace

std::string writeSpec(const ModelConfig &c) {
  std::string labels;
  for (size_t i = 0; i < c.labels.size(); ++i)
    labels += fmt::format("{}{}", i ? ", " : "", tomlString(c.labels[i]));
  return fmt::format(R"(name = {}

[image]
size = {}
patch = {}
channels = {}

[encoder]
width = {}
depth = {}
mlp = {}
heads = {}
block = "{}"
qk_norm = {}
gelu = "{}"
eps = {}

[bias]
qkv = {}
out = {}
mlp = {}
norm = {}

[head]
pool = "{}"
classes = {}
{})",
                     tomlString(c.name), c.image, c.patch, c.channels, c.width, c.depth, c.mlp,
                     c.heads, blockKindName(c.block), c.qkNorm, geluKindName(c.gelu), c.eps,
                     c.biasQkv, c.biasOut, c.biasMlp, c.biasNorm, poolKindName(c.pool), c.classes,
                     labels.empty() ? "" : fmt::format("labels = [{}]\n", labels));
}

} // namespace vitc::frontend
