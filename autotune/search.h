// The layout search: enumerate meshes and layouts, compile each, predict, rank.
//
// Every t x k factorization of the device count is a mesh; for each, the layouts that make a
// difference there: activations split over tokens or kept whole on the model axis, collective
// matmul on or off, weights also split over the data axis or not, and micro-batches when the
// activations do not fit otherwise. A candidate is compiled at depth 1 and 2 (identical blocks
// cost the same, so the full depth is extrapolated from the difference: ViT-22B's 48 layers plan
// in milliseconds) and simulated on the target (cost_model.h). A fixed graph (an imported ONNX
// model, which has one depth) is compiled from the graph itself and simulated whole instead.
// Candidates that do not fit in the device's memory are dropped with the reason. On a target this
// host can run, each candidate that fits is profiled first: its two-layer program (or the whole
// graph) runs on this host, its ops cost what they took, and the rest of its step (host work,
// target.h: Profile) scales to the other program's bytes.
#pragma once

#include <functional>

#include "autotune/cost_model.h"
#include "frontend/model_config.h"
#include "passes/layout.h"

namespace vitc::autotune {

struct Candidate {
  ir::Mesh mesh;
  passes::Layout layout;
  int64_t microbatches = 1;
  std::string meshString() const;
  std::string layoutString() const; // "tokens, ring, params/data, 2 micro-batches"
};

struct Evaluation {
  Candidate candidate;
  Prediction perStep;         // the whole batch, full depth, training included if asked
  double mfu = 0;             // model FLOPs / (step time x devices x peak)
  int64_t memoryBytes = 0;    // per device, everything
  int64_t optimizerBytes = 0; // training: AdamW's two moments, per device
  std::string rejected;       // why the candidate cannot run (empty: it can)
};

struct SearchOptions {
  int64_t devices = 1;
  int64_t batch = 1;
  bool train = false;
  Target target;
  // Set for targets this host can run (cpu): profiles a candidate's compiled program, whose ops
  // then cost what they measured instead of the target's rates.
  std::function<Expected<Profile>(const ir::Module &)> profile;
};

struct SearchResult {
  std::vector<Evaluation> ranked;   // candidates that fit, fastest first
  std::vector<Evaluation> rejected; // with reasons
  double modelFlopsPerStep = 0;
};

using Progress = std::function<void(size_t done, size_t total, const std::string &what)>;

Expected<SearchResult> search(const frontend::ModelConfig &config, const SearchOptions &options,
                              const Progress &progress = {});

// The forward module of a fixed graph (an imported ONNX model) for `batch` images.
using GraphBuilder = std::function<Expected<std::unique_ptr<ir::Module>>(int64_t batch)>;
// The search over a fixed graph: every candidate is compiled from the graph's own module at its
// own depth and simulated (and profiled) whole.
Expected<SearchResult> search(const GraphBuilder &graph, const SearchOptions &options,
                              const Progress &progress = {});

// Compiles `config` at `depth` (0: its own) for a candidate: its forward pass, or with `train` its
// training step (softmax cross-entropy, AdamW, the training pipeline); used by the search and by
// --measure.
Expected<std::unique_ptr<ir::Module>> compileCandidate(const frontend::ModelConfig &config,
                                                       int64_t batch, const Candidate &c,
                                                       int64_t depth = 0, bool train = false);
// The same from a forward module (a clone of it gets the candidate's mesh; the pipeline's
// raise-onnx makes an imported graph's ops vitc's own first).
Expected<std::unique_ptr<ir::Module>> compileCandidate(const ir::Module &forward,
                                                       const Candidate &c, bool train = false);

// The layout ViT-22B describes: tokens split on the model axis, collective matmul, weights also
// split over the data axis.
bool isPaperRecipe(const Candidate &c);

} // namespace vitc::autotune
