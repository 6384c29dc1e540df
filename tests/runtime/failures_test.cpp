// Failures on one device end the run on every device with an error that names it, never a hang.
#include <gtest/gtest.h>

#include <thread>

#include "runtime/thread_mesh.h"
#include "tests/runtime/sharded_programs.h"

namespace vitc::runtime {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

Mesh model(int64_t k) { return Mesh{{{"data", 1}, {"model", k}}}; }

double secondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

TEST(Failures, TimeoutNamesTheDevicesThatNeverArrived) {
  ThreadMeshOptions options;
  options.timeout = milliseconds(200);
  ThreadMesh tm(model(4), options);
  auto t0 = Clock::now();
  Status s = tm.run([&](int64_t d, Communicator &comm) -> Status {
    // Devices 1 and 3 are late: busy for longer than the timeout.
    if (d == 1 || d == 3)
      std::this_thread::sleep_for(milliseconds(800));
    std::vector<float> send(4, 1.0f), recv(16);
    return comm.allGather(1, send.data(), 4, recv.data())->wait();
  });
  ASSERT_FALSE(s);
  EXPECT_LT(secondsSince(t0), 10.0);
  EXPECT_NE(s.error().message().find("all_gather #0 over 'model' (devices 0, 1, 2, 3) timed out "
                                     "after 0.2 s: devices 1 and 3 never arrived"),
            std::string::npos)
      << s.error().str();
  EXPECT_TRUE(s.error().message().starts_with("device 0: ") ||
              s.error().message().starts_with("device 2: "))
      << s.error().str();
}

TEST(Failures, ADeviceThatFinishedWithoutJoiningFailsTheCollectiveAtOnce) {
  ThreadMeshOptions options;
  options.timeout = milliseconds(30'000);
  ThreadMesh tm(model(2), options);
  auto t0 = Clock::now();
  Status s = tm.run([&](int64_t d, Communicator &comm) -> Status {
    if (d == 1)
      return Status::ok();
    std::vector<float> send(4, 1.0f), recv(4);
    return comm.allReduce(1, send.data(), 4, recv.data())->wait();
  });
  ASSERT_FALSE(s);
  EXPECT_LT(secondsSince(t0), 10.0);
  EXPECT_EQ(s.error().message(), "device 0: all_reduce #0 over 'model' (devices 0, 1) can never "
                                 "complete: device 1 finished without joining it");
}

TEST(Failures, DisagreeingDevicesFail) {
  ThreadMesh tm(model(2));
  Status s = tm.run([&](int64_t d, Communicator &comm) -> Status {
    std::vector<float> send(8, 1.0f), recv(16);
    if (d == 0)
      return comm.allGather(1, send.data(), 4, recv.data())->wait();
    std::this_thread::sleep_for(milliseconds(20));
    return comm.reduceScatter(1, send.data(), 4, recv.data())->wait();
  });
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("devices 0 and 1 disagree on collective #0 over 'model': "
                                     "all_gather of 4 elements against reduce_scatter of 4 "
                                     "elements"),
            std::string::npos)
      << s.error().str();
}

TEST(Failures, ADroppedRequestAbandonsTheCollective) {
  ThreadMesh tm(model(2));
  Status s = tm.run([&](int64_t d, Communicator &comm) -> Status {
    std::vector<float> send(4, 1.0f), recv(8);
    if (d == 0) {
      comm.allGather(1, send.data(), 4, recv.data()); // dropped at once
      std::this_thread::sleep_for(milliseconds(50));
      return Status::ok();
    }
    std::this_thread::sleep_for(milliseconds(20));
    return comm.allGather(1, send.data(), 4, recv.data())->wait();
  });
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message(), "device 1: all_gather #0 over 'model' (devices 0, 1) was "
                                 "abandoned by device 0 (its request was dropped)");
}

TEST(Failures, TheMeshWorksAgainAfterAFailure) {
  ThreadMeshOptions options;
  options.timeout = milliseconds(100);
  ThreadMesh tm(model(2), options);
  Status bad = tm.run([&](int64_t d, Communicator &comm) -> Status {
    if (d == 1)
      return Error("injected");
    std::vector<float> send(4, 1.0f), recv(8);
    return comm.allGather(1, send.data(), 4, recv.data())->wait();
  });
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "device 1: injected");
  Status good = tm.run([&](int64_t d, Communicator &comm) -> Status {
    std::vector<float> send(4, static_cast<float>(d)), recv(8);
    VITC_TRY(comm.allGather(1, send.data(), 4, recv.data())->wait());
    return recv[0] == 0.0f && recv[4] == 1.0f ? Status::ok() : Status(Error("wrong data"));
  });
  EXPECT_TRUE(good) << good.error().str();
}

// A program that fails on one device, and runs the interpreter on the others.
class FailingProgram : public DeviceProgram {
public:
  Status setParams(std::vector<Tensor>) override { return Status::ok(); }
  Expected<std::vector<Tensor>> run(const std::vector<Tensor> &, Communicator &) override {
    std::this_thread::sleep_for(milliseconds(100));
    return makeError(Loc::inFile("model.vit").at(3, 5), "injected failure");
  }
};

TEST(Failures, AFailingProgramFailsTheRunNamingItsDevice) {
  auto m = test::parseVerified(test::programNamed("data_and_model").text(2, 2));
  ASSERT_TRUE(m) << m.error().str();
  auto failing = test::wrap(test::interpret(*m), [](const Executable &interpreter, int64_t device,
                                                    std::vector<Tensor> params)
                                                     -> Expected<std::unique_ptr<DeviceProgram>> {
    if (device == 2)
      return std::unique_ptr<DeviceProgram>(std::make_unique<FailingProgram>());
    return interpreter.instantiate(device, std::move(params));
  });
  RunnerOptions options;
  options.collectiveTimeout = milliseconds(60'000);
  auto runner =
      MeshRunner::create(failing, test::randomValues((*m)->params(), 1), std::move(options));
  ASSERT_TRUE(runner) << runner.error().str();
  auto t0 = Clock::now();
  auto out = (*runner)->run(test::randomValues((*m)->inputs(), 2));
  ASSERT_FALSE(out);
  EXPECT_LT(secondsSince(t0), 10.0);
  EXPECT_EQ(out.error().str(), "model.vit:3:5: error: device 2: injected failure");
}

TEST(Failures, AnInstantiationErrorNamesTheDevice) {
  auto m = test::parseVerified(test::programNamed("mlp_all_reduce").text(1, 2));
  ASSERT_TRUE(m) << m.error().str();
  auto failing = test::wrap(test::interpret(*m), [](const Executable &, int64_t device,
                                                    std::vector<Tensor>)
                                                     -> Expected<std::unique_ptr<DeviceProgram>> {
    return makeError(Loc{}, "no kernel for device {}", device);
  });
  auto runner = MeshRunner::create(failing, test::randomValues((*m)->params(), 1));
  ASSERT_FALSE(runner);
  EXPECT_EQ(runner.error().message(), "device 0: no kernel for device 0");
}

} // namespace
} // namespace vitc::runtime
