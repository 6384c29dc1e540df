// Signatures of modules.
#include "ir/signature.h"

namespace vitc::ir {
namespace {

TensorSpec specOf(std::string name, const TensorType &type) {
  return TensorSpec{std::move(name), type.dtype, type.shape, type.sharding};
}

} // namespace

Signature signatureOf(const Module &m) {
  Signature s;
  s.mesh = m.mesh;
  for (const Op *p : m.params())
    s.params.push_back(specOf(p->attrs.getStr("name"), p->type));
  for (const Op *in : m.inputs())
    s.inputs.push_back(specOf(in->attrs.getStr("name"), in->type));
  if (const Op *out = m.output())
    for (const Op *v : out->operands)
      s.outputs.push_back(specOf(v->name, v->type));
  return s;
}

} // namespace vitc::ir
