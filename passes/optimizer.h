// optimizer: append the optimizer's update of every parameter to a training step.
//
// After autodiff the module outputs the loss and, in the order of the module's params, the
// gradient of each. This pass adds the update as ordinary ops (so the fusion, sharding and memory
// passes and the backends treat it like the rest of the step) and makes the outputs the loss and
// the next value of every parameter, optimizer state included, in the order of the params:
//
//   %w = param {name = "W"}                %lr = input {name = "optimizer.lr"} : f32[]
//   ...                                     %u = mul %grad.W, %lr
//   output %loss, %grad.W           =>      %next.W = sub %w, %u
//                                           output %loss, %next.W
//
// AdamW (PyTorch's semantics: decoupled decay, bias-corrected moments) adds the params
// `W/adamw.m` and `W/adamw.v`; Adafactor (ViT-G's: factored second moments of matrices, update
// clipping, optional momentum) adds `W/adafactor.row` and `W/adafactor.col` for a parameter it
// factors (its 2-D view [first dimension, the rest] has both sides over 1), `W/adafactor.v`
// otherwise, and `W/adafactor.m` with momentum. Global-norm clipping scales every gradient by
// min(1, clip / ||g||) first. What changes from step to step is a rank-0 input the training loop
// computes (train/schedule.h): `optimizer.lr`, and for AdamW `optimizer.step_size` (lr / (1 -
// beta1^t)), `optimizer.decay` (1 - lr * weight_decay) and `optimizer.rsqrt_bias2` (1 / sqrt(1 -
// beta2^t)), for Adafactor `optimizer.beta2` (1 - t^-0.8).
// Preconditions: autodiff's output (loss, then one gradient per param, in param order).
// Postconditions: output i + 1 is the next value of param i; state params follow the weights.
// Cost: AdamW keeps two floats per parameter, Adafactor about one float per row and column of each
// matrix (plus one per parameter with momentum); the update reads and writes each once per step.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "passes/pass.h"

namespace vitc::passes {

std::unique_ptr<Pass> createOptimizer();

// The names of an optimizer's state tensors for the parameter `weight`, in the order the pass adds
// them as params; `shape` decides whether Adafactor factors it.
std::vector<std::string> optimizerStateNames(const OptimizerOptions &o, std::string_view weight,
                                             const Shape &shape);
// Their shapes.
std::vector<Shape> optimizerStateShapes(const OptimizerOptions &o, const Shape &shape);
// Floats of optimizer state for one parameter of `shape`.
int64_t optimizerStateFloats(const OptimizerOptions &o, const Shape &shape);

} // namespace vitc::passes
