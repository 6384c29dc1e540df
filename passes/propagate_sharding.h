// propagate-sharding: give every value a sharding, following the layout (passes/layout.h).
//
//   %x = input : f32[8,3,224,224]             %x = input : f32[8@data,3,224,224]
//   %h = matmul %y, %w1 {transpose_b}    =>   %w1 = param : f32[3072@model,768]
//   %o = matmul %g, %w2 {transpose_b}         %h = matmul %y, %w1 : f32[8@data,197,3072@model]
//   %r = add %x1, %o                          %o = matmul %g, %w2 : f32[8@data,197,768]
//   partial(model)
//                                             %o.rs = reshard %o : f32[8@data,197@model,768]
//                                             %r = add %x1.t, %o.rs : f32[8@data,197@model,768]
//
// Ops are visited in program order. The input's batch is split over the data axis. A projection
// whose output feeds another projection (through bias, GELU, slices, head reshapes and attention)
// is column-parallel: its weight is split by output features over the model axis; the partner that
// reads split features is row-parallel and leaves a partial sum. Where an op cannot run on the
// shardings it is given (a LayerNorm over split features, a residual add of a partial sum, a
// column-parallel projection of split tokens), a `reshard` marks the change, and
// insert-collectives turns it into communication. Values computed from parameters alone are
// sharded backwards from where they are used, so each device loads only its blocks of the
// weights; where that cannot be done, the device takes its block at load time.
// Preconditions: a verified module with a mesh; sizes the layout splits divide by the axis sizes
// (checked: width, heads, MLP and batch, from the module's metadata, are errors otherwise).
// Postconditions: the module verifies and computes the same outputs on the mesh. Cost: none by
// itself; the reshards it places are the communication of the layout.
#pragma once

#include "passes/pass.h"

namespace vitc::passes {

std::unique_ptr<Pass> createPropagateSharding();

} // namespace vitc::passes
