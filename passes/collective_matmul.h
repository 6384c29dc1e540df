// collective-matmul: overlap a projection's all-gather or reduce-scatter with the projection
// itself, chunk by chunk around a ring (ViT-22B's "asynchronous parallel linear operations").
//
// All-gather then matmul (k devices on the axis):
//   %g = all_gather %x {dim = 1}           %x1 = collective_permute %x {shift = -1}  : [B,T@m+1,K]
//   %y = matmul %g, %w                =>   %y0 = matmul %x, %w      : [B,T@m,N@m]
//                                          %y1 = matmul %x1, %w     : [B,T@m+1,N@m]  ...
//                                          %y = ring_concat %y0, %y1, ... {dim = 1} : [B,T,N@m]
// Each step multiplies the token block in hand while the next one travels.
//
// Matmul then reduce-scatter:
//   %p = matmul %h, %w : partial(m)        %hm = to_manual %h
//   %r = reduce_scatter %p {dim = 1}  =>   %h0 = all_slice %hm {dim = 1, rotation = 1}
//                                          %a0 = matmul %h0, %w          (running sum, block c+1)
//                                          %a0' = collective_permute %a0 {shift = -1}
//                                          %h1 = all_slice %hm {rotation = 2}; %p1 = matmul ...
//                                          %a1 = add %a0', %p1   ...   %r = from_manual %a(k-1)
// Each step computes this device's share of one token block and adds it to the running sum that
// arrived from the next device; after k steps a device holds the full sum of its own block.
//
// Preconditions: collectives inserted; the layout enables collective matmul. Rewritten: an
// all_gather of a non-contracted dimension used only by matmuls of a weight, and a matmul of a
// weight used only by a reduce_scatter of a non-contracted dimension. Each collective that is not
// rewritten is reported with the reason. Postconditions: same results up to float summation
// order. Cost: k matmuls of 1/k the rows (less efficient when blocks get small) and k-1 permutes
// of a block instead of one collective; the win is that communication overlaps compute once
// schedule-overlap makes the permutes asynchronous.
#pragma once

#include "passes/pass.h"

namespace vitc::passes {

std::unique_ptr<Pass> createCollectiveMatmul();

} // namespace vitc::passes
