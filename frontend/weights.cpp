// Weight sources: big_vision npz and random (safetensors: formats/bind.cpp).
#include "frontend/weights.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <optional>

#include "frontend/formats/npz.h"
#include "frontend/onnx/onnx_import.h"

namespace vitc::frontend {
namespace {

// Reshapes and transposes of big_vision tensors.
Tensor transpose2(const Tensor &t) {
  int64_t r = t.dim(0), c = t.dim(1);
  Tensor out = Tensor::zeros({c, r});
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < c; ++j)
      out.mutableData()[j * r + i] = t.data()[i * c + j];
  return out;
}

class BigVisionWeights : public WeightSource {
public:
  BigVisionWeights(std::string path, formats::NpzFile file)
      : path_(std::move(path)), file_(std::move(file)) {
    // Some exports nest everything under "params/".
    if (!file_.contains("Transformer/encoder_norm/scale") &&
        file_.contains("params/Transformer/encoder_norm/scale"))
      prefix_ = "params/";
  }

  Expected<Tensor> load(const TensorSpec &param) override {
    param_ = &param;
    return convert(param.name, param.shape);
  }
  std::string describe() const override { return path_ + " (big_vision)"; }
  std::string path() const override { return path_; }
  std::vector<std::string> tensorNames() const override { return file_.names(); }

private:
  Expected<Tensor> get(const std::string &bvName) {
    std::string full = prefix_ + bvName;
    if (!file_.contains(full)) {
      noteMissing(fmt::format("'{}'", full));
      return makeError(Loc::inFile(path_), "missing tensor '{}'", full);
    }
    markUsed(full);
    // Every conversion keeps or lowers the element count, so a member that declares more
    // elements than the parameter it feeds is wrong: refuse it from its .npy header alone, before
    // inflating what may be gigabytes from a small file.
    VITC_ASSIGN(Shape declared, file_.declaredShape(full));
    if (param_ && numElements(declared) > numElements(param_->shape))
      return makeError(Loc::inFile(path_),
                       "member '{}.npy' declares shape {}, more elements than the model's '{}' {} "
                       "holds",
                       full, shapeString(declared), param_->name, shapeString(param_->shape));
    return file_.load(full);
  }

  // A Dense kernel [in, out] as a PyTorch weight [out, in].
  Expected<Tensor> dense(const std::string &bvName) {
    VITC_ASSIGN(Tensor k, get(bvName));
    if (k.rank() != 2)
      return makeError(Loc::inFile(path_), "tensor '{}' has shape {}, expected a matrix",
                       prefix_ + bvName, shapeString(k.shape()));
    return transpose2(k);
  }

  // A per-head projection kernel [D, H, dh] (q, k, v) or [H, dh, D] (out) as [out, in].
  Expected<Tensor> headKernel(const std::string &bvName) {
    VITC_ASSIGN(Tensor k, get(bvName));
    if (k.rank() != 3)
      return makeError(Loc::inFile(path_), "tensor '{}' has shape {}, expected rank 3",
                       prefix_ + bvName, shapeString(k.shape()));
    bool out = bvName.ends_with("out/kernel");
    Shape flat = out ? Shape{k.dim(0) * k.dim(1), k.dim(2)} : Shape{k.dim(0), k.dim(1) * k.dim(2)};
    return transpose2(k.reshaped(flat));
  }

  Expected<Tensor> flat(const std::string &bvName) {
    VITC_ASSIGN(Tensor t, get(bvName));
    return t.reshaped({t.numel()});
  }

  // The big_vision tensor behind the IR name `name` (Hugging Face style).
  Expected<Tensor> convert(const std::string &name, const Shape &want) {
    static const std::string kEmb = "vit.embeddings.";
    if (name == kEmb + "patch_embeddings.projection.weight") {
      VITC_ASSIGN(Tensor k, get("embedding/kernel")); // [P, P, C, D]
      if (k.rank() != 4)
        return makeError(Loc::inFile(path_),
                         "tensor 'embedding/kernel' has shape {}, expected "
                         "[P, P, C, D]",
                         shapeString(k.shape()));
      int64_t p0 = k.dim(0), p1 = k.dim(1), c = k.dim(2), d = k.dim(3);
      Tensor out = Tensor::zeros({d, c, p0, p1});
      for (int64_t y = 0; y < p0; ++y)
        for (int64_t x = 0; x < p1; ++x)
          for (int64_t ch = 0; ch < c; ++ch)
            for (int64_t o = 0; o < d; ++o)
              out.mutableData()[((o * c + ch) * p0 + y) * p1 + x] =
                  k.data()[((y * p1 + x) * c + ch) * d + o];
      return out;
    }
    if (name == kEmb + "patch_embeddings.projection.bias")
      return get("embedding/bias");
    if (name == kEmb + "cls_token")
      return get("cls");
    if (name == kEmb + "position_embeddings") {
      VITC_ASSIGN(Tensor pos, get("pos_embedding"));
      if (pos.rank() == 3 && want.size() == 3 && pos.dim(1) + 1 == want[1]) {
        // big_vision adds position embeddings before prepending the class token.
        Tensor out = Tensor::zeros(want);
        std::memcpy(out.mutableData() + want[2], pos.data(),
                    static_cast<size_t>(pos.numel()) * sizeof(float));
        return out;
      }
      return pos;
    }
    if (name.rfind("vit.encoder.layer.", 0) == 0) {
      size_t dot = name.find('.', 18);
      std::string layer = name.substr(18, dot - 18);
      std::string rest = name.substr(dot + 1);
      std::string block = "Transformer/encoderblock_" + layer + "/";
      std::string mha = block + "MultiHeadDotProductAttention_0/";
      const std::pair<const char *, std::string> direct[] = {
          {"layernorm_before.weight", block + "LayerNorm_0/scale"},
          {"layernorm_before.bias", block + "LayerNorm_0/bias"},
          {"layernorm_after.weight", block + "LayerNorm_1/scale"},
          {"layernorm_after.bias", block + "LayerNorm_1/bias"},
          {"intermediate.dense.bias", block + "MlpBlock_0/Dense_0/bias"},
          {"output.dense.bias", block + "MlpBlock_0/Dense_1/bias"},
          {"attention.output.dense.bias", mha + "out/bias"},
      };
      for (const auto &[suffix, bv] : direct)
        if (rest == suffix)
          return get(bv);
      if (rest == "intermediate.dense.weight")
        return dense(block + "MlpBlock_0/Dense_0/kernel");
      if (rest == "output.dense.weight")
        return dense(block + "MlpBlock_0/Dense_1/kernel");
      if (rest == "attention.output.dense.weight")
        return headKernel(mha + "out/kernel");
      for (const char *proj : {"query", "key", "value"}) {
        std::string p = std::string("attention.attention.") + proj;
        if (rest == p + ".weight")
          return headKernel(mha + proj + "/kernel");
        if (rest == p + ".bias")
          return flat(mha + proj + "/bias");
      }
    }
    if (name == "vit.layernorm.weight")
      return get("Transformer/encoder_norm/scale");
    if (name == "vit.layernorm.bias")
      return get("Transformer/encoder_norm/bias");
    if (name.rfind("head.", 0) == 0)
      return mapHead(name.substr(5));
    if (name == "classifier.weight")
      return dense("head/kernel");
    if (name == "classifier.bias")
      return get("head/bias");
    return makeError(Loc::inFile(path_),
                     "big_vision ViT checkpoints have no tensor for '{}' "
                     "(parallel blocks and QK-norm are not big_vision features)",
                     name);
  }

  Expected<Tensor> mapHead(const std::string &rest) {
    const std::string h = "MAPHead_0/";
    const std::string mha = h + "MultiHeadDotProductAttention_0/";
    if (rest == "probe")
      return get(h + "probe");
    if (rest == "attention.in_proj_weight" || rest == "attention.in_proj_bias") {
      bool weight = rest.ends_with("weight");
      std::vector<Tensor> parts;
      for (const char *proj : {"query", "key", "value"}) {
        std::string base = mha + proj;
        VITC_ASSIGN(Tensor t, weight ? headKernel(base + "/kernel") : flat(base + "/bias"));
        parts.push_back(std::move(t));
      }
      Shape s = parts[0].shape();
      s[0] *= 3;
      Tensor out = Tensor::zeros(s);
      for (size_t i = 0; i < 3; ++i) {
        if (parts[i].shape() != parts[0].shape())
          return makeError(Loc::inFile(path_), "MAP head query, key and value differ in shape");
        std::memcpy(out.mutableData() + static_cast<int64_t>(i) * parts[0].numel(), parts[i].data(),
                    static_cast<size_t>(parts[i].numel()) * sizeof(float));
      }
      return out;
    }
    if (rest == "attention.out_proj.weight")
      return headKernel(mha + "out/kernel");
    if (rest == "attention.out_proj.bias")
      return get(mha + "out/bias");
    if (rest == "layernorm.weight")
      return get(h + "LayerNorm_0/scale");
    if (rest == "layernorm.bias")
      return get(h + "LayerNorm_0/bias");
    if (rest == "mlp.fc1.weight")
      return dense(h + "MlpBlock_0/Dense_0/kernel");
    if (rest == "mlp.fc1.bias")
      return get(h + "MlpBlock_0/Dense_0/bias");
    if (rest == "mlp.fc2.weight")
      return dense(h + "MlpBlock_0/Dense_1/kernel");
    if (rest == "mlp.fc2.bias")
      return get(h + "MlpBlock_0/Dense_1/bias");
    return makeError(Loc::inFile(path_),
                     "big_vision checkpoints have no MAP head tensor for 'head.{}'", rest);
  }

  std::string path_;
  formats::NpzFile file_;
  std::string prefix_;
  const TensorSpec *param_ = nullptr; // the parameter being loaded
};

// SplitMix64: a small, well-mixed generator; one stream per tensor.
struct SplitMix {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() {
    return (static_cast<double>(next() >> 11) + 0.5) * (1.0 / 9007199254740992.0);
  }
  double normal() {
    double u = uniform(), v = uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v);
  }
};

uint64_t hashName(const std::string &s) {
  uint64_t h = 1469598103934665603ull; // FNV-1a
  for (unsigned char c : s)
    h = (h ^ c) * 1099511628211ull;
  return h;
}

} // namespace

Tensor randomTensor(const TensorSpec &param, bool layerNormScale, uint64_t seed) {
  const Shape &s = param.shape;
  double mean = 0, stddev = 0.02;
  if (layerNormScale) {
    mean = 1.0;
    stddev = 0.05;
  } else if (s.size() >= 2) {
    int64_t fanIn = numElements(Shape(s.begin() + 1, s.end()));
    bool embedding = s[0] == 1; // [1, T, D]: class token, position embedding, probe
    stddev = embedding ? 0.2 : 1.0 / std::sqrt(static_cast<double>(fanIn));
  }
  SplitMix rng{seed ^ hashName(param.name)};
  Tensor t = Tensor::zeros(s);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.mutableData()[i] = static_cast<float>(mean + stddev * rng.normal());
  return t;
}

std::set<std::string> layerNormScales(const ir::Module &m) {
  // The role of a parameter shows in how the program uses it.
  std::set<std::string> names;
  for (const auto &op : m.ops())
    if (op->is(ir::OpKind::LayerNorm) && op->operand(1)->is(ir::OpKind::Param))
      names.insert(op->operand(1)->attrs.getStr("name"));
  return names;
}

Expected<Tensor> RandomWeights::load(const TensorSpec &param) {
  return randomTensor(param, layerNormScales_.contains(param.name), seed_);
}

std::string RandomWeights::describe() const { return fmt::format("random:{}", seed_); }

Expected<std::unique_ptr<WeightSource>> openWeights(const std::string &spec,
                                                    const ir::Module *model) {
  if (spec == "random" || spec.rfind("random:", 0) == 0) {
    uint64_t seed = 0;
    if (spec.size() > 7) {
      std::string digits = spec.substr(7);
      char *end = nullptr;
      errno = 0;
      seed = std::strtoull(digits.c_str(), &end, 10);
      if (digits.empty() || *end != '\0' || errno != 0)
        return makeError(Loc::inFile("--weights"), "bad seed '{}' in '{}': expected random:N",
                         digits, spec);
    }
    auto random = std::make_unique<RandomWeights>(seed);
    if (model)
      random->setLayerNormScales(layerNormScales(*model));
    return std::unique_ptr<WeightSource>(std::move(random));
  }
  std::string ext = std::filesystem::path(spec).extension().string();
  if (ext == ".onnx")
    return onnximport::openOnnxWeights(spec);
  if (ext == ".npz") {
    VITC_ASSIGN(formats::NpzFile npz, formats::NpzFile::open(spec));
    return std::unique_ptr<WeightSource>(std::make_unique<BigVisionWeights>(spec, std::move(npz)));
  }
  return formats::openSafetensorsWeights(spec);
}

} // namespace vitc::frontend
