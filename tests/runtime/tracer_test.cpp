// The Chrome/Perfetto trace: one process per device, compute and communication on their own
// tracks, and overlap that shows.
#include <gtest/gtest.h>

#include <thread>

#include <nlohmann/json.hpp>

#include "tests/common/subprocess.h"
#include "tests/runtime/sharded_programs.h"

namespace vitc::runtime {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

std::vector<json> eventsNamed(const json &events, const std::string &ph) {
  std::vector<json> out;
  for (const json &e : events)
    if (e["ph"] == ph)
      out.push_back(e);
  return out;
}

TEST(Tracer, SpansThatOverlapWithoutNestingGoToSeparateLanes) {
  Tracer::TimePoint t0 = Tracer::now();
  Tracer tracer(t0);
  auto at = [&](int ms) { return t0 + milliseconds(ms); };
  tracer.span(1, kCommunicationTrack, "a", at(0), at(10));
  tracer.span(1, kCommunicationTrack, "b", at(5), at(15)); // overlaps a: a second lane
  tracer.span(1, kCommunicationTrack, "c", at(1), at(3));  // inside a: a's lane
  tracer.span(1, kComputeTrack, "matmul", at(2), at(4), {{"flops", "128"}});
  json events = json::parse(tracer.eventsJson());
  std::map<std::string, json> spans;
  for (const json &e : eventsNamed(events, "X"))
    spans[e["name"]] = e;
  ASSERT_EQ(spans.size(), 4u);
  EXPECT_EQ(spans["a"]["tid"], spans["c"]["tid"]);
  EXPECT_NE(spans["a"]["tid"], spans["b"]["tid"]);
  EXPECT_NE(spans["matmul"]["tid"], spans["a"]["tid"]);
  EXPECT_NE(spans["matmul"]["tid"], spans["b"]["tid"]);
  EXPECT_EQ(spans["b"]["pid"], 1);
  EXPECT_DOUBLE_EQ(spans["b"]["ts"].get<double>(), 5000.0);
  EXPECT_DOUBLE_EQ(spans["b"]["dur"].get<double>(), 10000.0);
  EXPECT_EQ(spans["matmul"]["cat"], "compute");
  EXPECT_EQ(spans["matmul"]["args"]["flops"], "128");
  std::map<std::string, json> threads;
  for (const json &e : eventsNamed(events, "M")) {
    if (e["name"] == "thread_name")
      threads[e["args"]["name"]] = e;
    if (e["name"] == "process_name") {
      EXPECT_EQ(e["args"]["name"], "device 1");
    }
  }
  EXPECT_EQ(threads.size(), 3u);
  EXPECT_EQ(threads["compute"]["tid"], spans["matmul"]["tid"]);
  EXPECT_EQ(threads["communication"]["tid"], spans["a"]["tid"]);
  EXPECT_EQ(threads["communication #2"]["tid"], spans["b"]["tid"]);
}

// A device program that overlaps an all-gather with compute and records the compute.
class OverlappingProgram : public DeviceProgram {
public:
  Status setParams(std::vector<Tensor>) override { return Status::ok(); }
  Expected<std::vector<Tensor>> run(const std::vector<Tensor> &, Communicator &comm) override {
    std::vector<float> send(250'000, 1.0f), recv(500'000);
    auto request = comm.allGather(1, send.data(), 250'000, recv.data());
    {
      ScopedSpan span(comm.tracer(), comm.device(), kComputeTrack, "busy");
      std::this_thread::sleep_for(milliseconds(100));
    }
    VITC_TRY(request->wait());
    return std::vector<Tensor>{Tensor::zeros({4, 8})};
  }
};

TEST(Tracer, RunnerWritesOverlapThatShows) {
  auto m = test::parseVerified(test::programNamed("mlp_all_reduce").text(1, 2));
  ASSERT_TRUE(m) << m.error().str();
  RunnerOptions options;
  options.trace = true;
  options.link = *LinkModel::parse("model=0.01"); // 1 MB at 10 MB/s: 100 ms
  auto overlapping = test::wrap(
      test::interpret(*m),
      [](const Executable &, int64_t, std::vector<Tensor>) -> Expected<std::unique_ptr<DeviceProgram>> {
        return std::unique_ptr<DeviceProgram>(std::make_unique<OverlappingProgram>());
      });
  auto runner = MeshRunner::create(overlapping, test::randomValues((*m)->params(), 1), options);
  ASSERT_TRUE(runner) << runner.error().str();
  ASSERT_TRUE((*runner)->run(test::randomValues((*m)->inputs(), 2)));
  std::string path = test::makeTempDir("runtime_trace") + "/trace.json";
  Status s = (*runner)->writeTrace(path);
  ASSERT_TRUE(s) << s.error().str();
  json trace = json::parse(test::slurp(path));
  std::map<std::pair<int64_t, std::string>, json> spans; // (device, category)
  for (const json &e : eventsNamed(trace["traceEvents"], "X"))
    spans[{e["pid"].get<int64_t>(), e["cat"].get<std::string>()}] = e;
  for (int64_t d = 0; d < 2; ++d) {
    const json &comm = spans[{d, "communication"}], &compute = spans[{d, "compute"}];
    ASSERT_FALSE(comm.is_null()) << trace.dump();
    ASSERT_FALSE(compute.is_null()) << trace.dump();
    const json &program = spans[{d, "program"}];
    ASSERT_FALSE(program.is_null()) << trace.dump();
    EXPECT_EQ(comm["name"], "all_gather(model)");
    EXPECT_GE(comm["dur"].get<double>(), 100'000.0);
    EXPECT_NE(comm["tid"], compute["tid"]);
    // The compute ran while the collective was in flight.
    double commStart = comm["ts"].get<double>(), commEnd = commStart + comm["dur"].get<double>();
    double computeStart = compute["ts"].get<double>();
    EXPECT_LT(computeStart, commEnd);
    EXPECT_GE(computeStart, commStart);
  }
}

TEST(Tracer, InterpreterRunsRecordEveryCollective) {
  auto m = test::parseVerified(test::programNamed("async_overlap").text(2, 2));
  ASSERT_TRUE(m) << m.error().str();
  RunnerOptions options;
  options.trace = true;
  auto runner = MeshRunner::create(test::interpret(*m), test::randomValues((*m)->params(), 1), options);
  ASSERT_TRUE(runner) << runner.error().str();
  ASSERT_TRUE((*runner)->run(test::randomValues((*m)->inputs(), 2)));
  json events = json::parse((*runner)->tracer()->eventsJson());
  std::map<int64_t, int> collectives;
  for (const json &e : eventsNamed(events, "X"))
    if (e["cat"] == "communication")
      ++collectives[e["pid"].get<int64_t>()];
  EXPECT_EQ(collectives, (std::map<int64_t, int>{{0, 3}, {1, 3}, {2, 3}, {3, 3}}));
}

TEST(Tracer, RefusesToWriteAnUntracedRun) {
  auto m = test::parseVerified(test::programNamed("mlp_all_reduce").text(1, 2));
  ASSERT_TRUE(m) << m.error().str();
  auto runner =
      MeshRunner::create(test::interpret(*m), test::randomValues((*m)->params(), 1));
  ASSERT_TRUE(runner) << runner.error().str();
  EXPECT_EQ((*runner)->tracer(), nullptr);
  EXPECT_FALSE((*runner)->writeTrace("/nonexistent/trace.json"));
}

} // namespace
} // namespace vitc::runtime
