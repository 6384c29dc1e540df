// Layouts: their JSON files, checked setting by setting against the table of pass settings.
#include "passes/layout.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "passes/pass_options.h"
#include "support/files.h"

namespace vitc::passes {

std::string_view activationsName(Layout::Activations activations) {
  return activations == Layout::Activations::Tokens ? "tokens" : "replicated";
}

namespace {

// A layout file's key for the setting `layout.<name>`: "params_over_data" is
// `layout.params-over-data`.
std::string settingKey(std::string fileKey) {
  std::replace(fileKey.begin(), fileKey.end(), '_', '-');
  return "layout." + fileKey;
}

} // namespace

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
  PassOptions options;
  for (auto &[key, value] : j.items()) {
    if (key == "mesh") {
      if (!value.is_object())
        return makeError(at, "'mesh' must be an object of axis sizes");
      for (auto &[axis, size] : value.items()) {
        if (!size.is_number_integer() || size.get<int64_t>() <= 0)
          return makeError(at, "mesh axis '{}' needs a positive integer size", axis);
        f.mesh += fmt::format("{}{}={}", f.mesh.empty() ? "" : ",", axis, size.get<int64_t>());
      }
      continue;
    }
    if (key == "predicted" || key == "comment")
      continue; // written by autotune for people to read
    // Every other key is a pass setting, checked by the one table that `--pass-option` uses. A
    // name or a choice is a JSON string, a flag a JSON boolean and a number a JSON integer.
    std::string setting = settingKey(key);
    Expected<std::string> expected = describePassSetting(setting);
    if (!expected || key.find('-') != std::string::npos)
      return makeError(at, "unknown layout key '{}'", key);
    Expected<PassSetting> parsed =
        PassSetting::parse(setting, value.is_string() ? value.get<std::string>() : value.dump());
    if (!parsed || parsed->isWord() != value.is_string())
      return makeError(at, "'{}' must be {}", key, *expected);
    parsed->applyTo(options);
  }
  f.layout = options.layout;
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
  j["activations"] = activationsName(l.activations);
  j["params_over_data"] = l.paramsOverData;
  j["params_over_data_min_bytes"] = l.paramsOverDataMinBytes;
  j["collective_matmul"] = l.collectiveMatmul;
  j["microbatches"] = l.microbatches;
  return j.dump(2) + "\n";
}

} // namespace vitc::passes
