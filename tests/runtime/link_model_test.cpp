// The emulated interconnect: parsing the CLI form, modeled times, and overlap that is real.
#include <gtest/gtest.h>

#include <thread>

#include "runtime/thread_mesh.h"

namespace vitc::runtime {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

TEST(LinkModel, ParsesOneLinkForEveryAxis) {
  auto m = LinkModel::parse("25");
  ASSERT_TRUE(m) << m.error().str();
  EXPECT_EQ(*m->link("model"), (Link{25, 0}));
  EXPECT_EQ(*m->link("data"), (Link{25, 0}));
  auto l = LinkModel::parse(" 12.5 , 3 ");
  ASSERT_TRUE(l) << l.error().str();
  EXPECT_EQ(*l->link("anything"), (Link{12.5, 3}));
  EXPECT_EQ(l->str(), "12.5GB/s+3us");
}

TEST(LinkModel, ParsesLinksPerAxis) {
  auto m = LinkModel::parse("model=100,2,data=25");
  ASSERT_TRUE(m) << m.error().str();
  EXPECT_EQ(*m->link("model"), (Link{100, 2}));
  EXPECT_EQ(*m->link("data"), (Link{25, 0}));
  EXPECT_EQ(m->link("pipe"), nullptr);
  EXPECT_EQ(m->str(), "data=25GB/s, model=100GB/s+2us");
  auto d = LinkModel::parse("10,1,model=100");
  ASSERT_TRUE(d) << d.error().str();
  EXPECT_EQ(*d->link("model"), (Link{100, 0}));
  EXPECT_EQ(*d->link("data"), (Link{10, 1}));
}

struct BadSpec {
  const char *spec;
  const char *error;
};

class LinkModelErrors : public testing::TestWithParam<BadSpec> {};

TEST_P(LinkModelErrors, SayWhatIsWrong) {
  auto m = LinkModel::parse(GetParam().spec, Loc::inFile("--link"));
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().str(), GetParam().error);
}

INSTANTIATE_TEST_SUITE_P(
    All, LinkModelErrors,
    testing::Values(
        BadSpec{"", "--link: error: empty link spec (expected GBps[,latency_us] or "
                    "axis=GBps[,latency_us],...)"},
        BadSpec{"fast", "--link: error: link spec 'fast': 'fast' is not a bandwidth in GB/s"},
        BadSpec{"0", "--link: error: link spec '0': bandwidth must be positive, got 0"},
        BadSpec{"10,-1", "--link: error: link spec '10,-1': latency must not be negative, got -1"},
        BadSpec{"10,x", "--link: error: link spec '10,x': 'x' is not a latency in microseconds"},
        BadSpec{"10,1,2", "--link: error: link spec '10,1,2': unexpected '2' (expected "
                          "GBps[,latency_us] or axis=GBps[,latency_us],...)"},
        BadSpec{"model=", "--link: error: link spec 'model=': '' is not a bandwidth in GB/s"},
        BadSpec{"1x=3", "--link: error: link spec '1x=3': '1x' is not an axis name"},
        BadSpec{"model=1,model=2",
                "--link: error: link spec 'model=1,model=2': axis 'model' is given twice"}));

TEST(LinkModel, ChecksAxisNamesAgainstTheMesh) {
  Mesh mesh{{{"data", 2}, {"model", 2}}};
  EXPECT_TRUE(LinkModel::parse("model=1,data=2")->check(mesh));
  Status s = LinkModel::parse("model=1,pipe=2")->check(mesh);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message(), "the link model names axis 'pipe', but the mesh has only data, "
                                 "model");
}

TEST(LinkModel, TimesFollowTheRingAlgorithms) {
  LinkModel m = *LinkModel::parse("10,5"); // 10 bytes/ns, 5000 ns per step
  int64_t count = 1'000'000;               // 4 MB
  using std::chrono::nanoseconds;
  EXPECT_EQ(m.duration(CollectiveKind::AllGather, "model", 4, count), nanoseconds(3 * 405'000));
  EXPECT_EQ(m.duration(CollectiveKind::ReduceScatter, "model", 4, count), nanoseconds(3 * 405'000));
  EXPECT_EQ(m.duration(CollectiveKind::AllReduce, "model", 4, count), nanoseconds(6 * 105'000));
  EXPECT_EQ(m.duration(CollectiveKind::Permute, "model", 4, count), nanoseconds(405'000));
  EXPECT_EQ(m.duration(CollectiveKind::AllReduce, "model", 1, count), nanoseconds(0));
  EXPECT_EQ(LinkModel().duration(CollectiveKind::AllGather, "model", 4, count), nanoseconds(0));
}

// 250k floats (1 MB) over a 5 MB/s link: one ring step, 200 ms.
constexpr int64_t kCount = 250'000;
constexpr auto kComm = milliseconds(200);
constexpr auto kCompute = milliseconds(200);

// Runs `body` on every device of `mesh` and returns the slowest device's time.
milliseconds timeDevices(ThreadMesh &tm,
                         const std::function<Status(int64_t, Communicator &)> &body) {
  std::vector<milliseconds> times(static_cast<size_t>(tm.mesh().numDevices()));
  Status s = tm.run([&](int64_t d, Communicator &comm) -> Status {
    auto t0 = Clock::now();
    VITC_TRY(body(d, comm));
    times[static_cast<size_t>(d)] = std::chrono::duration_cast<milliseconds>(Clock::now() - t0);
    return Status::ok();
  });
  EXPECT_TRUE(s) << s.error().str();
  return *std::max_element(times.begin(), times.end());
}

ThreadMeshOptions slowLink() {
  ThreadMeshOptions options;
  options.link = *LinkModel::parse("0.005");
  return options;
}

TEST(LinkModel, AsyncCollectivesOverlapWithCompute) {
  ThreadMesh tm(Mesh{{{"data", 1}, {"model", 2}}}, slowLink());
  std::vector<std::vector<float>> send(2, std::vector<float>(kCount, 1.0f)),
      recv(2, std::vector<float>(2 * kCount));
  auto gather = [&](int64_t d, Communicator &comm) {
    return comm.allGather(1, send[static_cast<size_t>(d)].data(), kCount,
                          recv[static_cast<size_t>(d)].data());
  };
  milliseconds commOnly =
      timeDevices(tm, [&](int64_t d, Communicator &comm) { return gather(d, comm)->wait(); });
  milliseconds async = timeDevices(tm, [&](int64_t d, Communicator &comm) -> Status {
    auto request = gather(d, comm);
    std::this_thread::sleep_for(kCompute); // compute that does not need the data
    return request->wait();
  });
  milliseconds sync = timeDevices(tm, [&](int64_t d, Communicator &comm) -> Status {
    VITC_TRY(gather(d, comm)->wait());
    std::this_thread::sleep_for(kCompute);
    return Status::ok();
  });
  std::cout << fmt::format("[ timing ] comm {} ms, async comm+compute {} ms, sync {} ms\n",
                           commOnly.count(), async.count(), sync.count());
  EXPECT_GE(commOnly, kComm);
  EXPECT_LT(commOnly, kComm + milliseconds(130));
  EXPECT_GE(async, std::max(kComm, kCompute));
  EXPECT_LT(async, std::max(kComm, kCompute) + milliseconds(130));
  EXPECT_GE(sync, kComm + kCompute);
}

TEST(LinkModel, OneLinkCarriesOneCollectiveAtATimeButAxesRunInParallel) {
  ThreadMesh tm(Mesh{{{"data", 2}, {"model", 2}}}, slowLink());
  std::vector<std::vector<float>> send(4, std::vector<float>(kCount, 1.0f)),
      a(4, std::vector<float>(2 * kCount)), b(4, std::vector<float>(2 * kCount));
  auto twoOn = [&](int firstAxis, int secondAxis) {
    return timeDevices(tm, [&](int64_t d, Communicator &comm) -> Status {
      size_t i = static_cast<size_t>(d);
      auto r1 = comm.allGather(firstAxis, send[i].data(), kCount, a[i].data());
      auto r2 = comm.allGather(secondAxis, send[i].data(), kCount, b[i].data());
      VITC_TRY(r1->wait());
      return r2->wait();
    });
  };
  milliseconds sameAxis = twoOn(1, 1);
  milliseconds twoAxes = twoOn(0, 1);
  std::cout << fmt::format("[ timing ] two all-gathers on one axis {} ms, on two axes {} ms\n",
                           sameAxis.count(), twoAxes.count());
  EXPECT_GE(sameAxis, 2 * kComm);
  EXPECT_GE(twoAxes, kComm);
  EXPECT_LT(twoAxes, kComm + milliseconds(130));
}

TEST(LinkModel, LatencyCountsOncePerRingStep) {
  ThreadMeshOptions options;
  options.link = *LinkModel::parse("model=1000,25000"); // 25 ms per step
  ThreadMesh tm(Mesh{{{"data", 1}, {"model", 4}}}, options);
  milliseconds t = timeDevices(tm, [&](int64_t, Communicator &comm) {
    std::vector<float> send(16, 1.0f), recv(16);
    return comm.allReduce(1, send.data(), 16, recv.data())->wait();
  });
  EXPECT_GE(t, milliseconds(6 * 25)); // 2 (k - 1) steps
  EXPECT_LT(t, milliseconds(6 * 25 + 130));
}

} // namespace
} // namespace vitc::runtime
