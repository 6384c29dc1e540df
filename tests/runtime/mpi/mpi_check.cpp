// The MPI runtime under mpirun: collectives and sharded programs on every mesh of the world size.
//
//   mpirun -np N runtime_mpi_check                   every check; exits non-zero on a mismatch
//   mpirun -np N runtime_mpi_check --world-mismatch  a mesh of N+1 devices must be refused
//   mpirun -np N runtime_mpi_check --failure         a failing device must fail every rank
//   mpirun -np 2 runtime_mpi_check --stalled CALL    rank 1 never makes CALL (agree, agree-failed,
//                                                    gather, barrier, connect): rank 0's times out
//
// Every rank checks what it can see: its own collective results, and on rank 0 the assembled
// outputs against the same program on one device (run on rank 0 by the thread runtime).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "runtime/mpi/mpi_runtime.h"
#include "support/files.h"
#include "tests/runtime/sharded_programs.h"

namespace vitc {
namespace {

using runtime::Communicator;
using runtime::ProcessGroup;

int failures = 0;

void check(bool ok, const std::string &what, int64_t rank) {
  if (ok)
    return;
  ++failures;
  std::fprintf(stderr, "rank %lld: FAILED: %s\n", static_cast<long long>(rank), what.c_str());
}

float value(int64_t device, int64_t i) {
  return static_cast<float>(device + 1) * 0.5f + static_cast<float>(i) * 0.03125f;
}

// Every collective over every axis of `mesh`, two of them in flight at once.
void checkCollectives(ProcessGroup &world, const Mesh &mesh) {
  auto comm = world.connect(mesh, {});
  if (!comm) {
    check(false, comm.error().str(), world.rank());
    return;
  }
  Communicator &c = **comm;
  int64_t d = c.device(), n = 5;
  for (int axis = 0; axis < static_cast<int>(mesh.axes.size()); ++axis) {
    int64_t k = mesh.axisSize(axis), me = c.coordinate(axis);
    std::string where = fmt::format("mesh {} axis {}", mesh.str(), mesh.axes[axis].name);
    std::vector<float> send(static_cast<size_t>(k * n));
    for (int64_t i = 0; i < k * n; ++i)
      send[static_cast<size_t>(i)] = value(d, i);
    std::vector<float> gathered(static_cast<size_t>(k * n)), scattered(static_cast<size_t>(n)),
        reduced(static_cast<size_t>(n)), forward(static_cast<size_t>(n)),
        backward(static_cast<size_t>(n));
    auto r1 = c.allGather(axis, send.data(), n, gathered.data());
    auto r2 = c.reduceScatter(axis, send.data(), n, scattered.data());
    auto r3 = c.allReduce(axis, send.data(), n, reduced.data());
    auto r4 = c.permute(axis, 1, send.data(), n, forward.data());
    auto r5 = c.permute(axis, -1, send.data(), n, backward.data());
    for (auto *r : {r5.get(), r4.get(), r3.get(), r2.get(), r1.get()}) {
      Status s = r->wait();
      check(static_cast<bool>(s), where + ": " + (s ? "" : s.error().str()), d);
    }
    for (int64_t i = 0; i < n; ++i) {
      float sumScatter = 0, sumReduce = 0;
      for (int64_t m = 0; m < k; ++m) {
        int64_t other = mesh.withCoordinate(d, axis, m);
        check(gathered[static_cast<size_t>(m * n + i)] == value(other, i), where + " all_gather",
              d);
        sumScatter += value(other, me * n + i);
        sumReduce += value(other, i);
      }
      check(std::fabs(scattered[static_cast<size_t>(i)] - sumScatter) <= 1e-5f,
            where + " reduce_scatter", d);
      check(std::fabs(reduced[static_cast<size_t>(i)] - sumReduce) <= 1e-5f, where + " all_reduce",
            d);
      check(forward[static_cast<size_t>(i)] ==
                value(mesh.withCoordinate(d, axis, (me - 1 + k) % k), i),
            where + " permute +1", d);
      check(backward[static_cast<size_t>(i)] ==
                value(mesh.withCoordinate(d, axis, (me + 1) % k), i),
            where + " permute -1", d);
    }
  }
}

void checkPrograms(const std::shared_ptr<ProcessGroup> &world, const Mesh &mesh) {
  int64_t data = mesh.axes[0].size, model = mesh.axes[1].size;
  for (const test::ShardedProgram &p : test::shardedPrograms()) {
    std::string where = fmt::format("{} on data={}, model={}", p.name, data, model);
    runtime::RunnerOptions options;
    options.processes = world;
    options.trace = true;
    Expected<std::vector<Tensor>> out = test::runText(p.text(data, model), options);
    if (!out) {
      check(false, where + ": " + out.error().str(), world->rank());
      continue;
    }
    if (world->rank() != 0) {
      check(out->empty(), where + ": a rank other than 0 got outputs", world->rank());
      continue;
    }
    Expected<std::vector<Tensor>> reference = test::runText(p.text(1, 1));
    check(static_cast<bool>(reference), where + ": the reference failed", 0);
    if (reference) {
      double diff = test::maxDifference(*out, *reference);
      check(diff <= 1e-5, fmt::format("{}: differs from one device by {}", where, diff), 0);
    }
  }
}

// A runner over every device with a trace, to check the merged file.
void checkTrace(const std::shared_ptr<ProcessGroup> &world, const Mesh &mesh) {
  auto m = test::parseVerified(
      test::programNamed("mlp_all_reduce").text(mesh.axes[0].size, mesh.axes[1].size));
  runtime::RunnerOptions options;
  options.processes = world;
  options.trace = true;
  auto runner = runtime::MeshRunner::create(test::interpret(*m), test::randomValues((*m)->params(), 1), options);
  check(static_cast<bool>(runner), "trace runner", world->rank());
  if (!runner)
    return;
  check((*runner)->isWriter() == (world->rank() == 0), "isWriter", world->rank());
  check(static_cast<bool>((*runner)->run(test::randomValues((*m)->inputs(), 2))), "trace run",
        world->rank());
  std::string path = fmt::format("/tmp/vitc_mpi_trace_{}.json", world->size());
  Status s = (*runner)->writeTrace(path);
  check(static_cast<bool>(s), "writeTrace", world->rank());
  if (world->rank() != 0)
    return;
  Expected<std::string> text = readFile(path);
  check(text &&
            text->find("\"device " + std::to_string(world->size() - 1) + "\"") != std::string::npos,
        "the trace names every device", 0);
  if (!std::getenv("VITC_KEEP_TRACE"))
    std::remove(path.c_str());
}

// setParams under MPI: each process gives its own device its blocks, and the runner then computes
// what a fresh runner with those parameters computes.
void checkSetParams(const std::shared_ptr<ProcessGroup> &world, const Mesh &mesh) {
  auto m = test::parseVerified(
      test::programNamed("mlp_all_reduce").text(mesh.axes[0].size, mesh.axes[1].size));
  runtime::RunnerOptions options;
  options.processes = world;
  std::vector<Tensor> inputs = test::randomValues((*m)->inputs(), 2);
  std::vector<Tensor> next = test::randomValues((*m)->params(), 3);
  auto runner = runtime::MeshRunner::create(test::interpret(*m),
                                            test::randomValues((*m)->params(), 1), options);
  auto fresh = runtime::MeshRunner::create(test::interpret(*m), next, options);
  check(runner && fresh, "setParams runners", world->rank());
  if (!runner || !fresh)
    return;
  auto before = (*runner)->run(inputs);
  Status set = (*runner)->setParams(next);
  check(static_cast<bool>(set), "setParams: " + (set ? "" : set.error().str()), world->rank());
  auto after = (*runner)->run(inputs);
  auto expected = (*fresh)->run(inputs);
  check(before && after && expected, "setParams runs", world->rank());
  if (world->rank() != 0 || !before || !after || !expected)
    return;
  check(test::maxDifference(*after, *expected) == 0, "setParams: differs from a fresh runner", 0);
  check(test::maxDifference(*before, *after) > 0, "setParams: changed nothing", 0);
}

int checkWorldMismatch(const std::shared_ptr<ProcessGroup> &world) {
  int64_t devices = world->size() + 1;
  auto m = test::parseVerified(fmt::format(R"(module @m mesh(data=1, model={}) {{
  %x = input {{name = "x"}} : f32[4]
  %y = scale %x {{factor = 2.0}} : f32[4]
  output %y
}}
)",
                                           devices));
  check(static_cast<bool>(m), "the mismatched module parses", world->rank());
  if (!m)
    return 1;
  runtime::RunnerOptions options;
  options.processes = world;
  auto runner = runtime::MeshRunner::create(test::interpret(*m), {}, options);
  std::string expected =
      fmt::format("the mesh (data=1, model={0}) has {0} devices but MPI started {1} processes: "
                  "run with mpirun -np {0}",
                  devices, world->size());
  check(!runner && runner.error().message() == expected,
        "world-size mismatch: " + (runner ? std::string("accepted") : runner.error().str()),
        world->rank());
  return failures == 0 ? 0 : 1;
}

class FailingProgram : public runtime::DeviceProgram {
public:
  Status setParams(std::vector<Tensor>) override { return Status::ok(); }
  Expected<std::vector<Tensor>> run(const std::vector<Tensor> &, Communicator &) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    return makeError(Loc{}, "injected failure");
  }
};

// Runs another program, after two seconds' sleep on the late device.
class LateProgram : public runtime::DeviceProgram {
public:
  LateProgram(std::unique_ptr<runtime::DeviceProgram> inner, bool late)
      : inner_(std::move(inner)), late_(late) {}
  Status setParams(std::vector<Tensor> params) override {
    return inner_->setParams(std::move(params));
  }
  Expected<std::vector<Tensor>> run(const std::vector<Tensor> &inputs,
                                    Communicator &comm) override {
    if (late_)
      std::this_thread::sleep_for(std::chrono::seconds(2));
    return inner_->run(inputs, comm);
  }

private:
  std::unique_ptr<runtime::DeviceProgram> inner_;
  bool late_;
};

int checkFailure(const std::shared_ptr<ProcessGroup> &world) {
  auto m = test::parseVerified(test::programNamed("mlp_all_reduce").text(1, world->size()));
  std::shared_ptr<const runtime::Executable> interpreter = test::interpret(*m);
  auto failing = test::wrap(interpreter, [](const runtime::Executable &inner, int64_t device,
                                            std::vector<Tensor> params)
                                             -> Expected<std::unique_ptr<runtime::DeviceProgram>> {
    if (device == 1)
      return std::unique_ptr<runtime::DeviceProgram>(std::make_unique<FailingProgram>());
    return inner.instantiate(device, std::move(params));
  });
  runtime::RunnerOptions options;
  options.processes = world;
  auto runner =
      runtime::MeshRunner::create(failing, test::randomValues((*m)->params(), 1), options);
  check(static_cast<bool>(runner), "failure runner", world->rank());
  if (!runner)
    return 1;
  auto t0 = std::chrono::steady_clock::now();
  auto out = (*runner)->run(test::randomValues((*m)->inputs(), 2));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  check(!out && out.error().message() == "device 1: injected failure",
        "a failing device fails every rank: " + (out ? std::string("ok") : out.error().str()),
        world->rank());
  check(seconds < 20, "the failure took too long to reach every rank", world->rank());
  // The runner refuses to run again; the world still works for new runners.
  check(!(*runner)->run(test::randomValues((*m)->inputs(), 2)), "a poisoned runner runs",
        world->rank());
  checkCollectives(*world, Mesh{{{"data", 1}, {"model", world->size()}}});

  // A device that is late past the timeout: the others time out, and every rank reports it.
  auto slow = test::wrap(interpreter, [](const runtime::Executable &inner, int64_t device,
                                         std::vector<Tensor> params)
                                          -> Expected<std::unique_ptr<runtime::DeviceProgram>> {
    VITC_ASSIGN(auto program, inner.instantiate(device, std::move(params)));
    return std::unique_ptr<runtime::DeviceProgram>(
        std::make_unique<LateProgram>(std::move(program), device == 1));
  });
  // The others time out after 1.5 s and wait as long again to agree: the late device (2 s) makes
  // it into the agreement, so every rank gets the same error.
  options.collectiveTimeout = std::chrono::milliseconds(1500);
  auto late = runtime::MeshRunner::create(slow, test::randomValues((*m)->params(), 1), options);
  check(static_cast<bool>(late), "late runner", world->rank());
  if (!late)
    return 1;
  out = (*late)->run(test::randomValues((*m)->inputs(), 2));
  // Whichever device times out first is the root; device 1 is the late one.
  std::string members = world->size() == 2 ? "0, 1" : "0, 1, 2, 3";
  bool named = false;
  for (int64_t d = 0; d < world->size() && !out; ++d)
    named |=
        d != 1 && out.error().message() ==
                      fmt::format("device {0}: all_reduce(model) #0 over 'model' (devices {1}) "
                                  "timed out after 1.5 s on device {0}: some device of the "
                                  "group never arrived",
                                  d, members);
  check(named, "a late device times out: " + (out ? std::string("ok") : out.error().str()),
        world->rank());
  check(!world->abandoned(), "a late device abandoned the world", world->rank());
  return failures == 0 ? 0 : 1;
}

// Rank 1 never makes the call `which`; rank 0's must fail at its timeout with one line naming the
// call, the device and the timeout, and every later call must fail at once. Rank 0 then exits
// without finalizing MPI, and mpirun must end the job: rank 1, asleep, says FAILED if it wakes.
int checkStalled(const std::shared_ptr<ProcessGroup> &world, const std::string &which) {
  if (world->size() != 2) {
    check(false, "--stalled runs on 2 processes", world->rank());
    return 1;
  }
  if (world->rank() == 1) {
    std::this_thread::sleep_for(std::chrono::seconds(30));
    std::fprintf(stderr, "FAILED: rank 1 outlived rank 0's timeout by 30 s\n");
    return 1;
  }
  auto timeout = std::chrono::milliseconds(500);
  Mesh mesh{{{"data", 1}, {"model", 2}}};
  std::string expected;
  Status s;
  auto t0 = std::chrono::steady_clock::now();
  if (which == "agree") {
    s = world->agree(Status::ok(), timeout);
    expected = "agreeing on the outcome with every process (MPI_Iallreduce) timed out after 0.5 s "
               "on device 0: some process never arrived";
  } else if (which == "agree-failed") {
    // The cause is what the user sees, not the agreement it could not reach.
    s = world->agree(makeError(Loc{}, "injected failure"), timeout);
    expected = "device 0: injected failure";
  } else if (which == "gather") {
    Expected<std::vector<std::string>> all = world->gather("bytes", timeout);
    s = all ? Status::ok() : Status(all.error());
    expected = "gathering every process's results on device 0 (MPI_Igather) timed out after 0.5 s "
               "on device 0: some process never arrived";
  } else if (which == "barrier") {
    s = world->barrier(timeout);
    expected = "the barrier of every process (MPI_Ibarrier) timed out after 0.5 s on device 0: "
               "some process never arrived";
  } else if (which == "connect") {
    runtime::CollectiveOptions options;
    options.timeout = timeout;
    auto comm = world->connect(mesh, options);
    s = comm ? Status::ok() : Status(comm.error());
    expected = "connecting every process to mesh data=1, model=2 (MPI_Iallreduce) timed out "
               "after 0.5 s on device 0: some process never arrived";
  } else {
    check(false, "unknown --stalled call " + which, 0);
    return 1;
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  check(!s && s.error().message() == expected,
        which + ": " + (s ? std::string("ok") : s.error().message()), 0);
  check(seconds >= 0.5 && seconds < 10, fmt::format("{} took {} s", which, seconds), 0);
  check(world->abandoned(), which + ": the world is not marked abandoned", 0);
  // Every later call fails at once, and a failure of this process's own is still its own.
  t0 = std::chrono::steady_clock::now();
  Status again = world->agree(Status::ok(), std::chrono::seconds(60));
  check(!again && again.error().message().find("an earlier call timed out") != std::string::npos,
        "a call after the timeout", 0);
  Status own = world->agree(makeError(Loc{}, "late failure"), std::chrono::seconds(60));
  check(!own && own.error().message() == "device 0: late failure", "an own failure", 0);
  check(!world->barrier(std::chrono::seconds(60)), "a barrier after the timeout", 0);
  check(!world->gather("x", std::chrono::seconds(60)), "a gather after the timeout", 0);
  check(!world->connect(mesh, {}), "a connect after the timeout", 0);
  check(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10),
        "calls after the timeout waited", 0);
  std::printf("%s: --stalled %s\n", failures ? "FAILED" : "PASSED", which.c_str());
  std::fflush(stdout);
  return failures == 0 ? 0 : 1;
}

int mainImpl(int argc, char **argv) {
  auto world = runtime::initMpi(&argc, &argv);
  if (!world) {
    std::fprintf(stderr, "%s\n", world.error().str().c_str());
    return 1;
  }
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "--world-mismatch")
    return checkWorldMismatch(*world);
  if (mode == "--failure")
    return checkFailure(*world);
  if (mode == "--stalled")
    return checkStalled(*world, argc > 2 ? argv[2] : "");
  int64_t n = (*world)->size();
  std::vector<Mesh> meshes;
  for (int64_t data = 1; data <= n; ++data)
    if (n % data == 0)
      meshes.push_back(Mesh{{{"data", data}, {"model", n / data}}});
  for (const Mesh &mesh : meshes)
    checkCollectives(**world, mesh);
  for (const Mesh &mesh : meshes) {
    // The programs split dimensions of 4, 8 and 16: skip meshes that do not divide them.
    if (4 % mesh.axes[0].size != 0 || 4 % mesh.axes[1].size != 0)
      continue;
    checkPrograms(*world, mesh);
  }
  checkTrace(*world, meshes.back());
  checkSetParams(*world, meshes.back());
  if ((*world)->rank() == 0)
    std::printf("%s: %d failures on %lld processes\n", failures ? "FAILED" : "PASSED", failures,
                static_cast<long long>(n));
  return failures == 0 ? 0 : 1;
}

} // namespace
} // namespace vitc

int main(int argc, char **argv) { return vitc::mainImpl(argc, argv); }
