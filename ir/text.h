// The IR's text form: a printer whose every output the parser reads back.
//
//   module @vit-b16 mesh(data=1, model=1) attributes {image = 224} {
//     %pixels = input {name = "pixels"} : f32[1,3,224,224]
//     %q = matmul %ln, %wq {transpose_b = true} : f32[1,197,768@model]
//     %s = reduce_scatter %o {dim = 1, mesh_axis = "model"} : f32[1,197@model,768]
//     output %logits
//   }
//
// A type is the element type, the global shape, `@axis` after each dimension a mesh axis splits
// (`@axis+r` when rotated), and `partial(axes)` when the value still owes a sum. `//` starts a
// comment. `parse(print(m))` equals `m`, and printing is deterministic.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "ir/module.h"

namespace vitc::ir {

std::string print(const Module &m);
// One op as it appears in the module text (without indentation or newline).
std::string printOp(const Op &op, const Mesh &mesh);
std::string printAttrValue(const AttrValue &v);
// `name` as a value name: every character other than letters, digits, '_', '.' and '-' (weight
// names hold '/') becomes '_'.
std::string valueName(std::string_view name);

// Parses IR text; `filename` is used in error locations.
Expected<std::unique_ptr<Module>> parseModule(std::string_view text, const std::string &filename);

} // namespace vitc::ir
