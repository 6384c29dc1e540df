// Enumerating, compiling and ranking layout candidates.
#include "autotune/search.h"

#include <algorithm>
#include <sstream>

#include "frontend/vit_builder.h"
#include "passes/analysis.h"
#include "passes/loss.h"
#include "passes/pass_manager.h"
#include "passes/registry.h"

namespace vitc::autotune {

std::string Candidate::meshString() const { return mesh.str(); }

std::string Candidate::layoutString() const {
  std::string s;
  int64_t k = mesh.axes.size() > 1 ? mesh.axes[1].size : 1;
  int64_t t = mesh.axes[0].size;
  if (k > 1) {
    s = passes::activationsName(layout.activations);
    if (layout.activations == passes::Layout::Activations::Tokens)
      s += layout.collectiveMatmul ? ", ring" : ", no ring";
  } else {
    s = "data parallel";
  }
  if (t > 1 && layout.paramsOverData)
    s += ", weights/data";
  if (microbatches > 1)
    s += fmt::format(", {} micro-batches", microbatches);
  return s;
}

bool isPaperRecipe(const Candidate &c) {
  return c.layout.activations == passes::Layout::Activations::Tokens && c.layout.collectiveMatmul &&
         c.layout.paramsOverData;
}

Expected<std::unique_ptr<ir::Module>> compileCandidate(const frontend::ModelConfig &config,
                                                       int64_t batch, const Candidate &c,
                                                       int64_t depth, bool train) {
  frontend::ModelConfig cfg = config;
  if (depth > 0)
    cfg.depth = depth;
  return compileCandidate(*frontend::buildVit(cfg, batch), c, train);
}

Expected<std::unique_ptr<ir::Module>> compileCandidate(const ir::Module &forward,
                                                       const Candidate &c, bool train) {
  std::unique_ptr<ir::Module> m = forward.clone();
  m->mesh = c.mesh;
  passes::PassContext ctx;
  ctx.options.layout = c.layout;
  passes::PipelineOptions pipeline;
  if (train) {
    passes::appendLoss(*m, passes::LossKind::SoftmaxCrossEntropy);
    ctx.options.optimizer.kind = passes::OptimizerOptions::Kind::AdamW;
    for (const passes::PipelineStep &s : passes::trainingPipeline())
      pipeline.passes.push_back(s.pass);
  }
  std::ostringstream sink;
  passes::PassManager pm(std::move(pipeline), sink);
  VITC_TRY(pm.run(*m, ctx));
  return m;
}

namespace {

// Predictions at depth 1 and 2 extrapolated to `depth` layers.
Prediction extrapolate(const Prediction &p1, const Prediction &p2, int64_t depth) {
  double n = static_cast<double>(depth - 1);
  auto lin = [&](double a, double b) { return a + n * (b - a); };
  auto lini = [&](int64_t a, int64_t b) {
    return static_cast<int64_t>(lin(static_cast<double>(a), static_cast<double>(b)));
  };
  Prediction p;
  p.computeSeconds = lin(p1.computeSeconds, p2.computeSeconds);
  p.commSeconds = lin(p1.commSeconds, p2.commSeconds);
  p.exposedCommSeconds = std::max(0.0, lin(p1.exposedCommSeconds, p2.exposedCommSeconds));
  p.hostSeconds = std::max(0.0, lin(p1.hostSeconds, p2.hostSeconds));
  p.stepSeconds = lin(p1.stepSeconds, p2.stepSeconds);
  p.weightBytes = lini(p1.weightBytes, p2.weightBytes);
  p.activationBytes = std::max(p1.activationBytes, p2.activationBytes);
  p.savedActivationBytes = lini(p1.savedActivationBytes, p2.savedActivationBytes);
  return p;
}

std::vector<Candidate> enumerate(int64_t devices, int64_t batch) {
  std::vector<Candidate> out;
  for (int64_t t = 1; t <= devices; ++t) {
    if (devices % t != 0)
      continue;
    int64_t k = devices / t;
    for (int tokens = 0; tokens < 2; ++tokens)
      for (int ring = 0; ring < 2; ++ring)
        for (int overData = 0; overData < 2; ++overData) {
          // Skip layouts that mean the same as one already listed.
          if (k == 1 && (tokens == 0 || ring == 0))
            continue;
          if (k > 1 && tokens == 0 && ring == 0)
            continue;
          if (t == 1 && overData == 1)
            continue;
          Candidate c;
          c.mesh = ir::Mesh{{{"data", t}, {"model", k}}};
          c.layout.activations = tokens ? passes::Layout::Activations::Tokens
                                        : passes::Layout::Activations::Replicated;
          c.layout.collectiveMatmul = ring == 1;
          c.layout.paramsOverData = overData == 1;
          out.push_back(c);
        }
  }
  (void)batch;
  return out;
}

// What the search needs of a model: its compiled programs for a candidate, and how they make one
// prediction.
struct TunedModel {
  // The forward pass for `batch` images, for the model's FLOPs.
  std::function<Expected<std::unique_ptr<ir::Module>>(int64_t batch)> forward;
  // The candidate's programs for `batch` images: one (the whole model), or two (depth 1 and 2)
  // whose predictions are extrapolated to `depth` layers.
  std::function<Expected<std::vector<std::unique_ptr<ir::Module>>>(int64_t batch,
                                                                   const Candidate &c)>
      programs;
  int64_t depth = 1;
};

// The prediction of a candidate from its programs' (see TunedModel::programs).
Prediction combine(const std::vector<Prediction> &p, int64_t depth) {
  return p.size() == 2 ? extrapolate(p[0], p[1], depth) : p.front();
}

Expected<SearchResult> searchModel(const TunedModel &model, const SearchOptions &o,
                                   const Progress &progress) {
  SearchResult result;
  {
    VITC_ASSIGN(std::unique_ptr<ir::Module> m, model.forward(o.batch));
    result.modelFlopsPerStep = passes::analyze(*m).flops * (o.train ? 3.0 : 1.0);
  }
  std::vector<Candidate> candidates = enumerate(o.devices, o.batch);
  size_t done = 0;
  for (const Candidate &base : candidates) {
    ++done;
    if (progress)
      progress(done, candidates.size(), base.meshString() + " " + base.layoutString());
    int64_t t = base.mesh.axes[0].size;
    Evaluation best;
    best.candidate = base;
    // Micro-batches only when the activations do not fit otherwise.
    for (int64_t micro = 1; micro <= 16; micro *= 2) {
      Evaluation e;
      e.candidate = base;
      e.candidate.microbatches = micro;
      if (o.batch % (t * micro) != 0) {
        e.rejected = micro == 1
                         ? fmt::format("the batch ({}) does not divide over data={}", o.batch, t)
                         : best.rejected;
        if (micro == 1)
          best = e;
        break;
      }
      int64_t perStepBatch = o.batch / micro;
      Expected<std::vector<std::unique_ptr<ir::Module>>> programs =
          model.programs(perStepBatch, e.candidate);
      if (!programs) {
        e.rejected = programs.error().message();
        best = e;
        break;
      }
      std::vector<Prediction> simulated;
      for (const auto &program : *programs)
        simulated.push_back(simulate(*program, o.target));
      Prediction p = combine(simulated, model.depth);
      // Memory does not depend on timing: check it before profiling anything.
      // A training step's params are the weights and AdamW's two moments (laid out as their
      // weights: split over the data axis too where the weights are), its activations the
      // forward's saved ones and the gradients, as its memory plan has them.
      int64_t memory = p.weightBytes + p.activationBytes;
      if (o.train)
        e.optimizerBytes = p.weightBytes * 2 / 3;
      e.memoryBytes = memory;
      bool fits = memory <= o.target.memoryBytes;
      // The profile runs the largest program (two layers: every op of the one-layer program is
      // in it under the same name, and its host time scales to the other's bytes), and only
      // where all its devices fit in this host's memory.
      const ir::Module &largest = *programs->back();
      if (o.profile &&
          memory <= o.target.memoryBytes / std::max<int64_t>(1, largest.mesh.numDevices())) {
        VITC_ASSIGN(Profile measured, o.profile(largest));
        simulated.clear();
        for (const auto &program : *programs)
          simulated.push_back(simulate(*program, o.target, &measured));
        p = combine(simulated, model.depth);
      }
      double m = static_cast<double>(micro);
      Prediction step = p;
      step.computeSeconds *= m;
      step.commSeconds *= m;
      step.exposedCommSeconds *= m;
      step.hostSeconds *= m;
      step.stepSeconds *= m;
      e.perStep = step;
      e.mfu = result.modelFlopsPerStep /
              (step.stepSeconds * static_cast<double>(o.devices) * o.target.peakFlops);
      if (!fits) {
        e.rejected = fmt::format(
            "needs {:.1f} GiB per device ({} {:.1f}, activations {:.1f}), the device has {:.1f} "
            "GiB",
            static_cast<double>(memory) / (1 << 30),
            o.train ? "weights and optimizer state" : "weights",
            static_cast<double>(p.weightBytes) / (1 << 30),
            static_cast<double>(p.activationBytes) / (1 << 30),
            static_cast<double>(o.target.memoryBytes) / (1 << 30));
        best = e;
        // More micro-batches only shrink activations; weights stay.
        int64_t fixed = p.weightBytes;
        if (fixed > o.target.memoryBytes)
          break;
        continue;
      }
      best = e;
      break;
    }
    if (best.rejected.empty())
      result.ranked.push_back(best);
    else
      result.rejected.push_back(best);
  }
  std::stable_sort(result.ranked.begin(), result.ranked.end(),
                   [](const Evaluation &a, const Evaluation &b) {
                     return a.perStep.stepSeconds < b.perStep.stepSeconds;
                   });
  return result;
}

} // namespace

Expected<SearchResult> search(const frontend::ModelConfig &config, const SearchOptions &o,
                              const Progress &progress) {
  TunedModel model;
  model.depth = config.depth;
  model.forward = [&](int64_t batch) -> Expected<std::unique_ptr<ir::Module>> {
    return frontend::buildVit(config, batch);
  };
  // Identical blocks cost the same: depth 1 and 2 give the cost of the rest and of a block.
  model.programs = [&](int64_t batch,
                       const Candidate &c) -> Expected<std::vector<std::unique_ptr<ir::Module>>> {
    std::vector<std::unique_ptr<ir::Module>> programs;
    for (int64_t depth = 1; depth <= std::min<int64_t>(2, config.depth); ++depth) {
      VITC_ASSIGN(std::unique_ptr<ir::Module> m,
                  compileCandidate(config, batch, c, depth, o.train));
      programs.push_back(std::move(m));
    }
    return programs;
  };
  return searchModel(model, o, progress);
}

Expected<SearchResult> search(const GraphBuilder &graph, const SearchOptions &o,
                              const Progress &progress) {
  TunedModel model;
  model.forward = graph;
  model.programs = [&](int64_t batch,
                       const Candidate &c) -> Expected<std::vector<std::unique_ptr<ir::Module>>> {
    VITC_ASSIGN(std::unique_ptr<ir::Module> forward, graph(batch));
    VITC_ASSIGN(std::unique_ptr<ir::Module> m, compileCandidate(*forward, c, o.train));
    std::vector<std::unique_ptr<ir::Module>> programs;
    programs.push_back(std::move(m));
    return programs;
  };
  return searchModel(model, o, progress);
}

} // namespace vitc::autotune
