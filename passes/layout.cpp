// Layouts: pass settings and JSON files.
#include "passes/layout.h"

#include <algorithm>
#include <charconv>

#include <nlohmann/json.hpp>

#include "support/files.h"

namespace vitc::passes {

std::vector<std::pair<std::string, std::string>> Layout::settings() const {
  return {{"layout.data-axis", dataAxis},
          {"layout.model-axis", modelAxis},
          {"layout.activations", activations == Activations::Tokens ? "tokens" : "replicated"},
          {"layout.params-over-data", paramsOverData ? "true" : "false"},
          {"layout.params-over-data-min-bytes", std::to_string(paramsOverDataMinBytes)},
          {"layout.collective-matmul", collectiveMatmul ? "true" : "false"},
          {"layout.microbatches", std::to_string(microbatches)}};
}

namespace {

// The driver checks settings before any pass runs (checkPassSetting); a value that is still not a
// number (a test or tool that set it directly) keeps the default rather than throwing.
int64_t integerOr(const PassOptions &o, std::string_view key, int64_t fallback) {
  std::string text = o.get(key);
  int64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size())
    return fallback;
  return n;
}

} // namespace

Layout Layout::fromOptions(const PassOptions &o) {
  Layout l;
  l.dataAxis = o.get("layout.data-axis", l.dataAxis);
  l.modelAxis = o.get("layout.model-axis", l.modelAxis);
  l.activations = o.get("layout.activations", "tokens") == "replicated" ? Activations::Replicated
                                                                        : Activations::Tokens;
  l.paramsOverData = o.get("layout.params-over-data", "false") == "true";
  l.paramsOverDataMinBytes =
      integerOr(o, "layout.params-over-data-min-bytes", l.paramsOverDataMinBytes);
  l.collectiveMatmul = o.get("layout.collective-matmul", "true") == "true";
  l.microbatches = std::max<int64_t>(1, integerOr(o, "layout.microbatches", 1));
  return l;
}

Expected<LayoutFile> readLayoutFile(const std::string &path) {
  VITC_ASSIGN(std::string text, readFile(path));
  Loc at = Loc::inFile(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error &e) {
    return makeError(at, "malformed JSON at byte {}", e.byte);
  } catch (const nlohmann::json::exception &) { // a number too large for a double: "1e400"
    return makeError(at, "malformed JSON: a number is out of range");
  }
  if (!j.is_object())
    return makeError(at, "a layout is a JSON object");
  LayoutFile f;
  for (auto &[key, value] : j.items()) {
    if (key == "mesh") {
      if (!value.is_object())
        return makeError(at, "'mesh' must be an object of axis sizes");
      for (auto &[axis, size] : value.items()) {
        if (!size.is_number_integer() || size.get<int64_t>() <= 0)
          return makeError(at, "mesh axis '{}' needs a positive integer size", axis);
        f.mesh += fmt::format("{}{}={}", f.mesh.empty() ? "" : ",", axis, size.get<int64_t>());
      }
    } else if (key == "activations") {
      if (value != "tokens" && value != "replicated")
        return makeError(at, "'activations' must be \"tokens\" or \"replicated\"");
      f.layout.activations =
          value == "tokens" ? Layout::Activations::Tokens : Layout::Activations::Replicated;
    } else if (key == "params_over_data") {
      if (!value.is_boolean())
        return makeError(at, "'params_over_data' must be true or false");
      f.layout.paramsOverData = value.get<bool>();
    } else if (key == "params_over_data_min_bytes") {
      if (!value.is_number_integer() || value.get<int64_t>() < 0)
        return makeError(at, "'params_over_data_min_bytes' must be a non-negative integer");
      f.layout.paramsOverDataMinBytes = value.get<int64_t>();
    } else if (key == "collective_matmul") {
      if (!value.is_boolean())
        return makeError(at, "'collective_matmul' must be true or false");
      f.layout.collectiveMatmul = value.get<bool>();
    } else if (key == "microbatches") {
      if (!value.is_number_integer() || value.get<int64_t>() < 1)
        return makeError(at, "'microbatches' must be a positive integer");
      f.layout.microbatches = value.get<int64_t>();
    } else if (key == "data_axis" || key == "model_axis") {
      if (!value.is_string())
        return makeError(at, "'{}' must be a mesh axis name", key);
      (key == "data_axis" ? f.layout.dataAxis : f.layout.modelAxis) = value.get<std::string>();
    } else if (key == "predicted" || key == "comment") {
      continue; // written by autotune for people to read
    } else {
      return makeError(at, "unknown layout key '{}'", key);
    }
  }
  return f;
}

std::string writeLayoutJson(const Layout &l, const ir::Mesh &mesh) {
  nlohmann::ordered_json j;
  nlohmann::ordered_json m;
  for (const ir::MeshAxis &a : mesh.axes)
    m[a.name] = a.size;
  j["mesh"] = m;
  j["data_axis"] = l.dataAxis;
  j["model_axis"] = l.modelAxis;
  j["activations"] = l.activations == Layout::Activations::Tokens ? "tokens" : "replicated";
  j["params_over_data"] = l.paramsOverData;
  j["params_over_data_min_bytes"] = l.paramsOverDataMinBytes;
  j["collective_matmul"] = l.collectiveMatmul;
  j["microbatches"] = l.microbatches;
  return j.dump(2) + "\n";
}

} // namespace vitc::passes
