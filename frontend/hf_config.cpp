// Reading Hugging Face ViT config.json files.
#include "frontend/hf_config.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "support/files.h"

namespace vitc::frontend {
namespace {

using json = nlohmann::json;

// Line and column of byte `offset` in `text`.
Loc locAtOffset(const Loc &file, std::string_view text, size_t offset) {
  int line = 1, col = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return file.at(line, col);
}

// Where the value of top-level key `key` starts. JSON parsers do not keep positions, so find the
// quoted key followed by a colon; config.json keys are unique enough for this to name the line.
Loc locateKey(const Loc &file, std::string_view text, std::string_view key) {
  std::string quoted = "\"" + std::string(key) + "\"";
  size_t pos = 0;
  while ((pos = text.find(quoted, pos)) != std::string_view::npos) {
    size_t after = pos + quoted.size();
    while (after < text.size() && std::isspace(static_cast<unsigned char>(text[after])))
      ++after;
    if (after < text.size() && text[after] == ':') {
      ++after;
      while (after < text.size() && std::isspace(static_cast<unsigned char>(text[after])))
        ++after;
      return locAtOffset(file, text, after);
    }
    pos = after;
  }
  return file;
}

// A value for a message: scalars as written, arrays and objects by kind (dumping those would
// recurse as deep as they nest).
std::string jsonText(const json &v) {
  return v.is_structured() ? fmt::format("a JSON {}", v.type_name()) : v.dump();
}

class ConfigReader {
public:
  ConfigReader(const json &j, std::string_view text, ModelConfig &c) : j_(j), text_(text), c_(c) {}

  Status integer(const char *key, const char *field, int64_t &out) {
    auto it = j_.find(key);
    if (it == j_.end())
      return Status::ok();
    Loc at = remember(key, field);
    if (!it->is_number_integer())
      return makeError(at, "'{}' must be an integer", key);
    out = it->get<int64_t>();
    return Status::ok();
  }
  // image_size and patch_size may also be written [n, n].
  Status square(const char *key, const char *field, int64_t &out) {
    auto it = j_.find(key);
    if (it == j_.end())
      return Status::ok();
    Loc at = remember(key, field);
    if (it->is_array()) {
      if (it->size() != 2 || !(*it)[0].is_number_integer() || (*it)[0] != (*it)[1])
        return makeError(at, "'{}' must be an integer or a square [n, n]", key);
      out = (*it)[0].get<int64_t>();
      return Status::ok();
    }
    if (!it->is_number_integer())
      return makeError(at, "'{}' must be an integer", key);
    out = it->get<int64_t>();
    return Status::ok();
  }
  Status number(const char *key, const char *field, double &out) {
    auto it = j_.find(key);
    if (it == j_.end())
      return Status::ok();
    Loc at = remember(key, field);
    if (!it->is_number())
      return makeError(at, "'{}' must be a number", key);
    out = it->get<double>();
    return Status::ok();
  }
  Status boolean(const char *key, const char *field, bool &out) {
    auto it = j_.find(key);
    if (it == j_.end())
      return Status::ok();
    Loc at = remember(key, field);
    if (!it->is_boolean())
      return makeError(at, "'{}' must be true or false", key);
    out = it->get<bool>();
    return Status::ok();
  }
  Loc remember(const char *key, const char *field) {
    Loc at = locateKey(c_.file, text_, key);
    c_.keyLocs[field] = at;
    return at;
  }

private:
  const json &j_;
  std::string_view text_;
  ModelConfig &c_;
};

} // namespace

Expected<ModelConfig> parseHfConfig(std::string_view text, const std::string &path) {
  ModelConfig c;
  c.file = Loc::inFile(path);
  c.name = std::filesystem::path(path).parent_path().filename().string();
  if (c.name.empty())
    c.name = "vit";
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error &e) {
    std::string what = e.what();
    // nlohmann's text is "[json.exception.parse_error.101] parse error at line 3, column 5: ...";
    // keep the part after the position, which says what was wrong.
    size_t colon = what.find(": ");
    std::string detail = colon == std::string::npos ? what : what.substr(colon + 2);
    return Error(locAtOffset(c.file, text, e.byte > 0 ? e.byte - 1 : 0),
                 fmt::format("malformed JSON: {}", detail));
  } catch (const json::exception &e) {
    // A number too large for a double ("1e400") is an out_of_range error, with no position.
    std::string what = e.what();
    size_t close = what.find("] ");
    return makeError(c.file, "malformed JSON: {}",
                     close == std::string::npos ? what : what.substr(close + 2));
  }
  if (!j.is_object())
    return makeError(c.file.at(1, 1), "config.json must hold a JSON object");

  // transformers' ViTConfig defaults.
  c.width = 768;
  c.depth = 12;
  c.heads = 12;
  c.mlp = 3072;
  c.image = 224;
  c.patch = 16;
  c.channels = 3;
  c.eps = 1e-12;
  c.pool = PoolKind::Token;
  c.block = BlockKind::Sequential;

  if (auto it = j.find("model_type"); it != j.end() && (!it->is_string() || *it != "vit"))
    return makeError(locateKey(c.file, text, "model_type"),
                     "model_type {} is not a ViT (expected \"vit\")", jsonText(*it));

  ConfigReader r(j, text, c);
  VITC_TRY(r.integer("hidden_size", "width", c.width));
  VITC_TRY(r.integer("num_hidden_layers", "depth", c.depth));
  VITC_TRY(r.integer("num_attention_heads", "heads", c.heads));
  VITC_TRY(r.integer("intermediate_size", "mlp", c.mlp));
  VITC_TRY(r.square("image_size", "image", c.image));
  VITC_TRY(r.square("patch_size", "patch", c.patch));
  VITC_TRY(r.integer("num_channels", "channels", c.channels));
  VITC_TRY(r.number("layer_norm_eps", "eps", c.eps));
  VITC_TRY(r.boolean("qkv_bias", "bias.qkv", c.biasQkv));

  if (auto it = j.find("hidden_act"); it != j.end()) {
    Loc at = r.remember("hidden_act", "gelu");
    std::string act = it->is_string() ? it->get<std::string>() : jsonText(*it);
    if (act == "gelu")
      c.gelu = GeluKind::Erf;
    else if (act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast")
      c.gelu = GeluKind::Tanh;
    else
      return makeError(at,
                       "unsupported hidden_act \"{}\" (vitc supports \"gelu\" and the tanh "
                       "approximations \"gelu_new\", \"gelu_pytorch_tanh\", \"gelu_fast\")",
                       act);
  }

  bool classifier = false;
  if (auto it = j.find("architectures"); it != j.end() && it->is_array())
    for (const json &a : *it)
      classifier |= a.is_string() && a.get<std::string>() == "ViTForImageClassification";

  c.classes = 0;
  if (classifier) {
    c.classes = 2; // transformers' default num_labels
    if (auto it = j.find("id2label"); it != j.end()) {
      Loc at = r.remember("id2label", "labels");
      if (!it->is_object())
        return makeError(at, "'id2label' must be an object of index -> label");
      std::vector<std::string> labels(it->size());
      std::vector<bool> given(labels.size()); // "1" and "01" name one index: one would be missing
      for (auto &[key, value] : it->items()) {
        size_t index = 0;
        try {
          size_t used = 0;
          index = std::stoul(key, &used);
          if (used != key.size())
            throw std::invalid_argument(key);
        } catch (const std::exception &) {
          return makeError(at, "'id2label' key \"{}\" is not an index", key);
        }
        if (index >= labels.size() || !value.is_string())
          return makeError(at, "'id2label' must map 0..{} to strings", labels.size() - 1);
        if (given[index])
          return makeError(at, "'id2label' gives index {} twice", index);
        given[index] = true;
        labels[index] = value.get<std::string>();
      }
      c.classes = static_cast<int64_t>(labels.size());
      c.labels = std::move(labels);
    } else {
      VITC_TRY(r.integer("num_labels", "classes", c.classes));
    }
  }
  VITC_TRY(validate(c));
  return c;
}

Expected<ModelConfig> readHfConfigFile(const std::string &path) {
  VITC_ASSIGN(std::string text, readFile(path));
  return parseHfConfig(text, path);
}

} // namespace vitc::frontend
