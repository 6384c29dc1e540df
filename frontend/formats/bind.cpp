// Binding weights to a signature, and the safetensors weight source.
#include "frontend/formats/bind.h"

#include <cmath>

#include <fmt/format.h>

#include "frontend/formats/safetensors.h"

namespace vitc::formats {
namespace {

class SafetensorsWeights : public WeightSource {
public:
  SafetensorsWeights(std::string path, SafetensorsFile file)
      : path_(std::move(path)), file_(std::move(file)) {}

  Expected<Tensor> load(const TensorSpec &param) override {
    std::string found = param.name;
    if (!file_.find(found) && found.starts_with("vit."))
      found = param.name.substr(4); // a ViTModel checkpoint has no "vit." prefix
    const SafetensorsEntry *entry = file_.find(found);
    if (!entry) {
      noteMissing(fmt::format("'{}' (shape {})", param.name, shapeString(param.shape)));
      return makeError(Loc::inFile(path_), "missing tensor '{}' (shape {})", param.name,
                       shapeString(param.shape));
    }
    markUsed(found);
    // Integers convert to floats exactly enough, but a weight stored as integers is a mistake (a
    // quantized or index tensor under a parameter's name).
    if (entry->dtype.starts_with('I') || entry->dtype.starts_with('U'))
      return makeError(Loc::inFile(path_),
                       "tensor '{}' has dtype {}; weights must be floating point (F32, F16, BF16 "
                       "or F64)",
                       found, entry->dtype);
    return file_.load(found);
  }
  std::string describe() const override { return path_; }
  std::string path() const override { return path_; }
  std::vector<std::string> tensorNames() const override {
    std::vector<std::string> names;
    for (const SafetensorsEntry &e : file_.entries())
      names.push_back(e.name);
    return names;
  }

private:
  std::string path_;
  SafetensorsFile file_;
};

// "a, b, c and N more" (with `separator` ", ").
std::string listSome(const std::vector<std::string> &items, size_t shown,
                     const char *separator = ", ") {
  std::string out;
  for (size_t i = 0; i < items.size() && i < shown; ++i)
    out += (i ? separator : "") + items[i];
  if (items.size() > shown)
    out += fmt::format(" and {} more", items.size() - shown);
  return out;
}

} // namespace

bool isKnownExtraTensor(const std::string &name) {
  // Hugging Face's ViTModel ends in a pooler (a dense layer and tanh over the class token) that
  // ViTForImageClassification and vitc's models do not have; checkpoints saved from a ViTModel
  // carry it. This list stays short: every entry is a tensor vitc may drop without changing any
  // output, and README.md (Weights) names each one.
  return name.starts_with("pooler.") || name.starts_with("vit.pooler.");
}

Expected<std::vector<Tensor>> bindWeights(const Signature &sig, WeightSource &source,
                                          const WeightLoadOptions &options) {
  std::vector<Tensor> values;
  values.reserve(sig.params.size());
  std::vector<std::string> misshaped;
  bool lacking = false;
  for (const TensorSpec &param : sig.params) {
    size_t missingBefore = source.missing().size();
    Expected<Tensor> t = source.load(param);
    // A missing or mis-shaped tensor is reported with the others after the loop; any other error
    // at once.
    if (!t && source.missing().size() > missingBefore) {
      lacking = true;
      values.emplace_back();
      continue;
    }
    if (!t)
      return t.error();
    if (t->shape() != param.shape) {
      misshaped.push_back(fmt::format("tensor '{}' has shape {}, the model needs {}", param.name,
                                      shapeString(t->shape()), shapeString(param.shape)));
      values.emplace_back();
      continue;
    }
    values.push_back(t.take());
  }
  std::vector<std::string> unused;
  if (!options.allowUnused)
    for (const std::string &name : source.tensorNames())
      if (!source.used().contains(name) && !isKnownExtraTensor(name))
        unused.push_back(fmt::format("'{}'", name));
  if (misshaped.empty() && !lacking && unused.empty())
    return values;

  // Shapes first: a file for another size of the same model differs in shape everywhere, and the
  // first such tensor says the most.
  constexpr size_t kShown = 3;
  std::vector<std::string> parts;
  if (!misshaped.empty())
    parts.push_back(listSome(misshaped, kShown, "; "));
  if (lacking)
    parts.push_back(fmt::format("missing tensor{} {}", source.missing().size() == 1 ? "" : "s",
                                listSome(source.missing(), kShown)));
  if (!unused.empty())
    parts.push_back(fmt::format("the file holds {} tensor{} the model does not use: {} "
                                "(--allow-unused-weights runs anyway)",
                                unused.size(), unused.size() == 1 ? "" : "s",
                                listSome(unused, kShown)));
  std::string message;
  for (const std::string &part : parts)
    message += (message.empty() ? "" : "; ") + part;
  return makeError(Loc::inFile(source.path()), "{}", message);
}

Expected<std::unique_ptr<WeightSource>> openSafetensorsWeights(const std::string &path) {
  VITC_ASSIGN(SafetensorsFile file, SafetensorsFile::open(path));
  return std::unique_ptr<WeightSource>(std::make_unique<SafetensorsWeights>(path, std::move(file)));
}

std::optional<std::string> nonFiniteWarning(const std::string &file, const std::string &name,
                                            const Tensor &t) {
  const float *data = t.data();
  int64_t n = t.numel(), first = -1, count = 0;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(data[i])) {
      if (first < 0)
        first = i;
      ++count;
    }
  if (first < 0)
    return std::nullopt;
  // The flat index as one index per dimension, last dimension fastest.
  const Shape &shape = t.shape();
  std::vector<int64_t> index(shape.size());
  int64_t rest = first;
  for (size_t d = shape.size(); d-- > 0;) {
    index[d] = shape[d] > 0 ? rest % shape[d] : 0;
    rest = shape[d] > 0 ? rest / shape[d] : 0;
  }
  std::string where;
  for (size_t d = 0; d < index.size(); ++d)
    where += fmt::format("{}{}", d ? ", " : "", index[d]);
  float bad = data[first];
  std::string what = std::isnan(bad) ? "NaN" : (bad > 0 ? "Inf" : "-Inf");
  std::string prefix = file.empty() ? "" : Loc::inFile(file).str() + ": ";
  return fmt::format("{}warning: tensor '{}' holds {} at index [{}] ({} non-finite value{} in all)",
                     prefix, name, what, where, count, count == 1 ? "" : "s");
}

} // namespace vitc::formats
