// insert-collectives: turn every reshard into the collectives that perform it.
//
//   %o.rs = reshard %o : f32[8@data,197@model,768]          %o.rs = reduce_scatter %o
//     (%o : f32[8@data,197,768] partial(model))       =>         {dim = 1, mesh_axis = "model"}
//   %x.rs = reshard %x : f32[8@data,197,768]                %x.rs = all_gather %x
//     (%x : f32[8@data,197@model,768])                          {dim = 1, mesh_axis = "model"}
//
// Per mesh axis, in mesh order: a partial sum is reduced (reduce_scatter straight into a dimension
// the target splits over that axis, else all_reduce); a dimension the target no longer splits is
// all-gathered; a dimension the target newly splits is all-sliced (each device keeps its block,
// no communication). Reshards of weights become all_slices computed once at load.
// Preconditions: a verified module. Postconditions: no reshard remains; every op runs on the
// shardings its operands have ("every op is local"). Cost: the communication of the layout, now
// explicit; a reshard that needs nothing is removed.
#pragma once

#include "passes/pass.h"

namespace vitc::passes {

std::unique_ptr<Pass> createInsertCollectives();

} // namespace vitc::passes
