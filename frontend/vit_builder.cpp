// The ViT family as IR: patch embedding, sequential or parallel blocks, pooling, classifier.
#include "frontend/vit_builder.h"

#include <cctype>
#include <cmath>

#include "ir/builder.h"

namespace vitc::frontend {
namespace {

using ir::Op;

class VitBuilder {
public:
  VitBuilder(const ModelConfig &c, int64_t batch, ir::Module &m)
      : c_(c), b_(m), batch_(batch), n_(c.tokens()), d_(c.width), h_(c.heads), dh_(c.headDim()) {
    b_.setLoc(c.file);
  }

  void build() {
    Op *pixels = b_.input("pixels", {batch_, c_.channels, c_.image, c_.image});
    Op *x = embed(pixels);
    for (int64_t i = 0; i < c_.depth; ++i)
      x = c_.block == BlockKind::Parallel ? parallelBlock(x, i) : sequentialBlock(x, i);
    x = layerNorm(x, "vit.layernorm", c_.biasNorm, false, "encoded");
    Op *pooled = pool(x);
    if (c_.classes == 0) {
      b_.output({pooled});
      return;
    }
    Op *w = param("classifier.weight", {c_.classes, d_}, true, "classifier.w");
    Op *logits = b_.matmul(pooled, w, true, "logits.nobias");
    logits = b_.add(logits, param("classifier.bias", {c_.classes}, true, "classifier.b"), "logits");
    b_.output({logits});
  }

private:
  Op *param(const std::string &weight, Shape shape, bool head, std::string value) {
    return b_.param(weight, std::move(shape), head, std::move(value));
  }

  // Patchify, project, prepend the class token, add position embeddings.
  Op *embed(Op *pixels) {
    const std::string p = "vit.embeddings.";
    int64_t cpp = c_.channels * c_.patch * c_.patch;
    Op *patches = b_.patchify(pixels, c_.patch, "patches");
    Op *w = param(p + "patch_embeddings.projection.weight", {d_, c_.channels, c_.patch, c_.patch},
                  false, "patch.w");
    Op *w2 = b_.reshape(w, {d_, cpp}, "patch.w2d");
    Op *x = b_.matmul(patches, w2, true, "patch.proj");
    x = b_.add(x, param(p + "patch_embeddings.projection.bias", {d_}, false, "patch.b"),
               "patch.embed");
    if (c_.pool == PoolKind::Token) {
      Op *cls = param(p + "cls_token", {1, 1, d_}, false, "cls");
      Op *clsB = b_.broadcast(cls, {batch_, 1, d_}, "cls.batch");
      x = b_.concat({clsB, x}, 1, "tokens");
    }
    Op *pos = param(p + "position_embeddings", {1, n_, d_}, false, "pos");
    return b_.add(x, pos, "embedded");
  }

  Op *layerNorm(Op *x, const std::string &prefix, bool bias, bool head, const std::string &name) {
    Shape s{x->shape().back()};
    std::string short_ = name + ".";
    Op *w = param(prefix + ".weight", s, head, short_ + "w");
    Op *b = bias ? param(prefix + ".bias", s, head, short_ + "b") : nullptr;
    return b_.layerNorm(x, w, b, c_.eps, name);
  }

  // x [.., in] times an [out, in] weight, plus an optional bias.
  Op *linear(Op *x, const std::string &prefix, int64_t out, bool bias, bool head,
             const std::string &name) {
    int64_t in = x->shape().back();
    Op *w = param(prefix + ".weight", {out, in}, head, name + ".w");
    Op *y = b_.matmul(x, w, true, bias ? name + ".mm" : name);
    if (!bias)
      return y;
    return b_.add(y, param(prefix + ".bias", {out}, head, name + ".b"), name);
  }

  Op *gelu(Op *x, const std::string &name) {
    ir::Attrs attrs;
    if (c_.gelu == GeluKind::Tanh)
      attrs.set("approximate", true);
    return b_.create(ir::OpKind::Gelu, {x}, std::move(attrs), name);
  }

  // [B, T, D] -> [B, H, T, dh]
  Op *splitHeads(Op *x, const std::string &name) {
    int64_t t = x->shape()[1];
    Op *r = b_.reshape(x, {batch_, t, h_, dh_}, name + ".heads");
    return b_.transpose(r, {0, 2, 1, 3}, name + ".bhtd");
  }

  // Scaled dot-product attention of split heads; returns [B, Tq, D].
  Op *attend(Op *q, Op *k, Op *v, const std::string &l) {
    int64_t tq = q->shape()[2];
    Op *s = b_.matmul(q, k, true, l + "scores");
    s = b_.scale(s, 1.0 / std::sqrt(static_cast<double>(dh_)), l + "scores.scaled");
    Op *p = b_.softmax(s, l + "probs");
    Op *o = b_.matmul(p, v, false, l + "context");
    o = b_.transpose(o, {0, 2, 1, 3}, l + "context.bthd");
    return b_.reshape(o, {batch_, tq, d_}, l + "context.merged");
  }

  // Self-attention of the normalized tokens y, before the out-projection.
  Op *selfAttention(Op *y, int64_t i) {
    std::string p = layerPrefix(i) + "attention.attention.";
    std::string l = fmt::format("l{}.", i);
    Op *q = splitHeads(linear(y, p + "query", d_, c_.biasQkv, false, l + "q"), l + "q");
    Op *k = splitHeads(linear(y, p + "key", d_, c_.biasQkv, false, l + "k"), l + "k");
    Op *v = splitHeads(linear(y, p + "value", d_, c_.biasQkv, false, l + "v"), l + "v");
    if (c_.qkNorm) {
      q = layerNorm(q, p + "query_norm", c_.biasNorm, false, l + "q.norm");
      k = layerNorm(k, p + "key_norm", c_.biasNorm, false, l + "k.norm");
    }
    return attend(q, k, v, l);
  }

  Op *mlpHidden(Op *y, int64_t i) {
    std::string l = fmt::format("l{}.", i);
    Op *h = linear(y, layerPrefix(i) + "intermediate.dense", c_.mlp, c_.biasMlp, false, l + "fc1");
    return gelu(h, l + "gelu");
  }

  std::string layerPrefix(int64_t i) const { return fmt::format("vit.encoder.layer.{}.", i); }

  // x = x + Attn(LN1(x)); x = x + MLP(LN2(x))
  Op *sequentialBlock(Op *x, int64_t i) {
    std::string p = layerPrefix(i);
    std::string l = fmt::format("l{}.", i);
    Op *y = layerNorm(x, p + "layernorm_before", c_.biasNorm, false, l + "ln1");
    Op *a = linear(selfAttention(y, i), p + "attention.output.dense", d_, c_.biasOut, false,
                   l + "attn.out");
    x = b_.add(x, a, l + "res1");
    Op *z = layerNorm(x, p + "layernorm_after", c_.biasNorm, false, l + "ln2");
    Op *m = linear(mlpHidden(z, i), p + "output.dense", d_, c_.biasMlp, false, l + "fc2");
    return b_.add(x, m, l + "res2");
  }

  // y = LN(x); x = x + Attn(y) + MLP(y)
  Op *parallelBlock(Op *x, int64_t i) {
    std::string p = layerPrefix(i);
    std::string l = fmt::format("l{}.", i);
    Op *y = layerNorm(x, p + "layernorm", c_.biasNorm, false, l + "ln");
    Op *attn = selfAttention(y, i);
    Op *hidden = mlpHidden(y, i);
    Op *a = linear(attn, p + "attention.output.dense", d_, c_.biasOut, false, l + "attn.out");
    Op *m = linear(hidden, p + "output.dense", d_, c_.biasMlp, false, l + "fc2");
    x = b_.add(x, a, l + "res.attn");
    return b_.add(x, m, l + "res");
  }

  Op *pool(Op *x) {
    switch (c_.pool) {
    case PoolKind::Token: {
      Op *t = b_.slice(x, 1, 0, 1, "cls.out");
      return b_.reshape(t, {batch_, d_}, "pooled");
    }
    case PoolKind::Gap:
      return b_.mean(x, 1, "pooled");
    case PoolKind::Map:
      return mapHead(x);
    }
    return x;
  }

  // Multihead attention pooling (SigLIP / big_vision MAPHead).
  Op *mapHead(Op *x) {
    Op *probe = param("head.probe", {1, 1, d_}, true, "map.probe");
    Op *probeB = b_.broadcast(probe, {batch_, 1, d_}, "map.probe.batch");
    Op *inW = param("head.attention.in_proj_weight", {3 * d_, d_}, true, "map.in.w");
    Op *inB = param("head.attention.in_proj_bias", {3 * d_}, true, "map.in.b");
    auto project = [&](Op *from, int64_t which, const std::string &name) {
      Op *w = b_.slice(inW, 0, which * d_, d_, name + ".w");
      Op *bias = b_.slice(inB, 0, which * d_, d_, name + ".b");
      return b_.add(b_.matmul(from, w, true, name + ".mm"), bias, name);
    };
    Op *q = splitHeads(project(probeB, 0, "map.q"), "map.q");
    Op *k = splitHeads(project(x, 1, "map.k"), "map.k");
    Op *v = splitHeads(project(x, 2, "map.v"), "map.v");
    Op *o = attend(q, k, v, "map.");
    Op *h = linear(o, "head.attention.out_proj", d_, true, true, "map.attn.out");
    Op *y = layerNorm(h, "head.layernorm", true, true, "map.ln");
    Op *m = gelu(linear(y, "head.mlp.fc1", c_.mlp, true, true, "map.fc1"), "map.gelu");
    m = linear(m, "head.mlp.fc2", d_, true, true, "map.fc2");
    h = b_.add(h, m, "map.res");
    return b_.reshape(h, {batch_, d_}, "pooled");
  }

  const ModelConfig &c_;
  ir::Builder b_;
  int64_t batch_, n_, d_, h_, dh_;
};

} // namespace

std::unique_ptr<ir::Module> buildVit(const ModelConfig &c, int64_t batch) {
  auto m = std::make_unique<ir::Module>();
  // Module names are printed bare after '@': keep the characters the IR parser reads back.
  m->name = c.name;
  for (char &ch : m->name)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != '.' && ch != '-')
      ch = '_';
  if (m->name.empty())
    m->name = "vit";
  m->attrs.set("batch", batch);
  m->attrs.set("image", c.image);
  m->attrs.set("patch", c.patch);
  m->attrs.set("tokens", c.tokens());
  m->attrs.set("width", c.width);
  m->attrs.set("depth", c.depth);
  m->attrs.set("heads", c.heads);
  m->attrs.set("mlp", c.mlp);
  VitBuilder(c, batch, *m).build();
  return m;
}

} // namespace vitc::frontend
