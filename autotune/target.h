// What a device can do, for the cost model: compute rate, memory, and the links between devices.
//
// A target is a JSON file, or a built-in name:
//   tpuv4 — the hardware of the ViT-22B paper, from public TPU v4 figures (275 TFLOP/s bf16,
//           32 GiB HBM at 1.2 TB/s, inter-chip links); examples/targets/tpuv4.json is the same.
//   cpu   — this machine, calibrated once by running small programs through the backend that
//           will run the model, and cached under ~/.cache/vitc.
// Links are per mesh axis ("*" for the others), in the units of `--link`: GB/s and µs per step.
#pragma once

#include <map>
#include <string>
#include <unordered_map>

#include "backends/backend.h"
#include "runtime/link_model.h"
#include "runtime/runner.h"

namespace vitc::autotune {

struct Target {
  std::string name;
  double peakFlops = 0;          // per device, at `dtypeBytes` precision
  double matmulEfficiency = 0.8; // the fraction of peak large matmuls reach
  double memoryBandwidth = 0;    // bytes/s, for elementwise work and data movement
  double opOverheadSeconds = 0;  // per kernel launched
  int64_t dtypeBytes = 4;        // 4 for f32, 2 for bf16
  int64_t memoryBytes = 0;       // per device
  int64_t coresPerHost = 0;      // CPU targets: devices beyond this share cores (0: no sharing)
  runtime::LinkModel links;
  std::string comment;
  // Calibrated targets: when (UTC, ISO 8601) and at what 1-minute load average of the host.
  std::string calibratedAt;
  double calibrationLoad = 0;
  // Measured on the model being tuned (cpu targets): seconds per FLOP for matmuls and attention,
  // seconds per byte moved for other ops, by op keyword. Kinds not listed use the rates above.
  std::map<std::string, double> secondsPerUnit;

  // Compute rate of one device when `devices` of them share this host.
  double effectiveFlops(int64_t devices) const;
  double effectiveBandwidth(int64_t devices) const;
};

Expected<Target> parseTarget(std::string_view json, const std::string &path);
std::string writeTarget(const Target &t);
Target tpuv4();

// The cpu target for the backend `compile` compiles for, measured on this host (cached
// per backend under `cacheDir`; `recalibrate` measures again). A cached one is measured again too
// when it is not this host's (other cores or memory), says not when it was taken, or was taken
// while the host was busy (a load average of its cores or more: its rates are too low) and the
// host is quieter now.
Expected<Target> calibrateCpu(const backends::Compiler &compile, const std::string &backend,
                              const std::string &cacheDir, bool recalibrate = false);

// Values for every parameter of `m` (random: timing needs the sizes, not the values), and zeros
// for a training step's optimizer state.
std::vector<Tensor> timingParams(const ir::Module &m);

// Compute seconds of the ops of one compiled program, by op name.
using OpSeconds = std::unordered_map<std::string, double>;

// What one step of a compiled program took on this host.
struct Profile {
  OpSeconds ops; // each op's mean compute time, averaged over the devices
  // The rest of a step's wall time, which no op's span holds: the thread runtime's collectives and
  // the waits for them, copying the outputs out of the devices' workspaces and, for a training
  // step, the runner's check that every output is finite and the load calls (weight packing) that
  // prepare the next params, device after device. It grows with the params a step updates.
  double hostSeconds = 0;
  int64_t hostBytes = 0; // what the program moves besides its kernels (cost_model.h: hostBytes)
};

// Wall seconds of each timed run of a compiled program on this host's thread runtime, run as its
// users run it: a forward pass (vitc run), or a training step (a module with param updates) whose
// params' next values stay on the devices (vitc train, runtime::MeshRunner::step). Params are
// random, inputs zero; one step warms up first, then each of `runs` runs takes `stepsPerRun`
// steps (the micro-batches of one batch), and more runs follow (up to ten times as many) until
// they took `minSeconds`: short programs are timed often enough that the host's other work
// averages out. `runner` gets the runner afterwards, for its trace.
Expected<std::vector<double>> timeSteps(std::shared_ptr<const ir::Module> m,
                                        const backends::Compiler &compile,
                                        const runtime::RunnerOptions &options, int runs,
                                        int64_t stepsPerRun = 1, double minSeconds = 0,
                                        std::unique_ptr<runtime::MeshRunner> *runner = nullptr);

// Profiles a compiled program on this host: runs `m` (timeSteps) with communication free (a
// warm-up and five runs or half a second of them, then as many traced) and returns each op's mean
// compute time, averaged over the devices, and the rest of the median step. The devices share the
// host's cores as they do when the program runs for real, so what sharing costs is in the times.
Expected<Profile> profileProgram(const ir::Module &m, const backends::Compiler &compile);

// Refines a cpu target on the model itself: profiles a one-layer version of it on one device and
// records each op kind's measured rate.
Status calibrateOnModel(Target &target, const ir::Module &oneLayer,
                        const backends::Compiler &compile);

// `spec` is "cpu", "tpuv4" or a path to a target JSON file; `recalibrate` measures "cpu" again.
Expected<Target> loadTarget(const std::string &spec, const backends::Compiler &compile,
                            const std::string &backend, bool recalibrate = false);

} // namespace vitc::autotune
