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
  std::unique_ptr<ir::Module> m = frontend::buildVit(cfg, batch);
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

} // namespace

Expected<SearchResult> search(const frontend::ModelConfig &config, const SearchOptions &o,
                              const Progress &progress) {
  SearchResult result;
  {
    frontend::ModelConfig one = config;
    std::unique_ptr<ir::Module> m = frontend::buildVit(one, o.batch);
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
      Expected<std::unique_ptr<ir::Module>> m1 =
          compileCandidate(config, perStepBatch, e.candidate, 1, o.train);
      if (!m1) {
        e.rejected = m1.error().message();
        best = e;
        break;
      }
      Expected<std::unique_ptr<ir::Module>> m2 =
          config.depth > 1 ? compileCandidate(config, perStepBatch, e.candidate, 2, o.train)
                           : Expected<std::unique_ptr<ir::Module>>(nullptr);
      if (!m2)
        return m2.error();
      Prediction p1 = simulate(**m1, o.target);
      Prediction p =
          config.depth > 1 ? extrapolate(p1, simulate(**m2, o.target), config.depth) : p1;
      // Memory does not depend on timing: check it before profiling anything.
      // A training step's params are the weights and AdamW's two moments (laid out as their
      // weights: split over the data axis too where the weights are), its activations the
      // forward's saved ones and the gradients, as its memory plan has them.
      int64_t memory = p.weightBytes + p.activationBytes;
      if (o.train)
        e.optimizerBytes = p.weightBytes * 2 / 3;
      e.memoryBytes = memory;
      bool fits = memory <= o.target.memoryBytes;
      // The profile runs the largest compiled program (two layers; every op of the one-layer
      // program is in it under the same name), and only where all its devices fit in memory.
      const ir::Module &largest = config.depth > 1 ? **m2 : **m1;
      if (o.profile &&
          memory <= o.target.memoryBytes / std::max<int64_t>(1, largest.mesh.numDevices())) {
        VITC_ASSIGN(OpSeconds measured, o.profile(largest));
        p1 = simulate(**m1, o.target, &measured);
        p = config.depth > 1 ? extrapolate(p1, simulate(**m2, o.target, &measured), config.depth)
                             : p1;
      }
      double m = static_cast<double>(micro);
      Prediction step = p;
      step.computeSeconds *= m;
      step.commSeconds *= m;
      step.exposedCommSeconds *= m;
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

} // namespace vitc::autotune
