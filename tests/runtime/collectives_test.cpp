// The thread runtime's collectives on 1x2, 2x1, 2x2 and 1x4 meshes, over each axis.
#include <gtest/gtest.h>

#include <thread>

#include "runtime/thread_mesh.h"

namespace vitc::runtime {
namespace {

struct MeshCase {
  int64_t data, model;
  int axis;
};

std::string caseName(const testing::TestParamInfo<MeshCase> &info) {
  return fmt::format("{}x{}_{}", info.param.data, info.param.model,
                     info.param.axis == 0 ? "data" : "model");
}

Mesh meshOf(const MeshCase &c) { return Mesh{{{"data", c.data}, {"model", c.model}}}; }

// Values whose sums depend on the order they are added in: a large first term and small others.
float value(int64_t device, int64_t i) {
  float big = (device % 2 == 0) ? 1.0e6f : -1.0e6f;
  return (i % 3 == 0 ? big : 0.0f) + static_cast<float>(device + 1) * 0.1f +
         static_cast<float>(i) * 0.0137f;
}

std::vector<float> values(int64_t device, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[static_cast<size_t>(i)] = value(device, i);
  return v;
}

// The sum of `f(member)` over the group of `device`, in coordinate order.
template <typename F> float orderedSum(const Mesh &mesh, int64_t device, int axis, F f) {
  float sum = f(mesh.withCoordinate(device, axis, 0));
  for (int64_t c = 1; c < mesh.axisSize(axis); ++c)
    sum += f(mesh.withCoordinate(device, axis, c));
  return sum;
}

class Collectives : public testing::TestWithParam<MeshCase> {
protected:
  Mesh mesh = meshOf(GetParam());
  int axis = GetParam().axis;
  int64_t k = mesh.axisSize(axis);
  int64_t devices = mesh.numDevices();
  static constexpr int64_t n = 7;
};

TEST_P(Collectives, AllGather) {
  ThreadMesh tm(mesh);
  std::vector<std::vector<float>> got(static_cast<size_t>(devices));
  Status s = tm.run([&](int64_t d, Communicator &comm) -> Status {
    std::vector<float> send = values(d, n), recv(static_cast<size_t>(k * n));
    VITC_TRY(comm.allGather(axis, send.data(), n, recv.data())->wait());
    got[static_cast<size_t>(d)] = recv;
    return Status::ok();
  });
  ASSERT_TRUE(s) << s.error().str();
  for (int64_t d = 0; d < devices; ++d)
    for (int64_t c = 0; c < k; ++c)
      for (int64_t i = 0; i < n; ++i)
        EXPECT_EQ(got[static_cast<size_t>(d)][static_cast<size_t>(c * n + i)],
                  value(mesh.withCoordinate(d, axis, c), i));
}

TEST_P(Collectives, ReduceScatterSumsInCoordinateOrder) {
  ThreadMesh tm(mesh);
  std::vector<std::vector<float>> got(static_cast<size_t>(devices));
  for (int repeat = 0; repeat < 5; ++repeat) {
    Status s = tm.run([&](int64_t d, Communicator &comm) -> Status {
      std::vector<float> send = values(d, k * n), recv(static_cast<size_t>(n));
      VITC_TRY(comm.reduceScatter(axis, send.data(), n, recv.data())->wait());
      got[static_cast<size_t>(d)] = recv;
      return Status::ok();
    });
    ASSERT_TRUE(s) << s.error().str();
    for (int64_t d = 0; d < devices; ++d) {
      int64_t c = mesh.coordinate(d, axis);
      for (int64_t i = 0; i < n; ++i)
        EXPECT_EQ(got[static_cast<size_t>(d)][static_cast<size_t>(i)],
                  orderedSum(mesh, d, axis, [&](int64_t m) { return value(m, c * n + i); }));
    }
  }
}

TEST_P(Collectives, AllReduceSumsInCoordinateOrder) {
  ThreadMesh tm(mesh);
  // Large enough to be summed in several chunks at once.
  const int64_t big = 3 * 4096 + 17;
  std::vector<std::vector<float>> got(static_cast<size_t>(devices));
  for (int repeat = 0; repeat < 3; ++repeat) {
    Status s = tm.run([&](int64_t d, Communicator &comm) -> Status {
      std::vector<float> send = values(d, big), recv(static_cast<size_t>(big));
      VITC_TRY(comm.allReduce(axis, send.data(), big, recv.data())->wait());
      got[static_cast<size_t>(d)] = recv;
      return Status::ok();
    });
    ASSERT_TRUE(s) << s.error().str();
    for (int64_t d = 0; d < devices; ++d)
      for (int64_t i = 0; i < big; i += 97)
        ASSERT_EQ(got[static_cast<size_t>(d)][static_cast<size_t>(i)],
                  orderedSum(mesh, d, axis, [&](int64_t m) { return value(m, i); }))
            << "device " << d << " element " << i;
  }
}

TEST_P(Collectives, AllReduceInPlace) {
  ThreadMesh tm(mesh);
  std::vector<std::vector<float>> got(static_cast<size_t>(devices));
  Status s = tm.run([&](int64_t d, Communicator &comm) -> Status {
    std::vector<float> buffer = values(d, n);
    VITC_TRY(comm.allReduce(axis, buffer.data(), n, buffer.data())->wait());
    got[static_cast<size_t>(d)] = buffer;
    return Status::ok();
  });
  ASSERT_TRUE(s) << s.error().str();
  for (int64_t d = 0; d < devices; ++d)
    for (int64_t i = 0; i < n; ++i)
      EXPECT_EQ(got[static_cast<size_t>(d)][static_cast<size_t>(i)],
                orderedSum(mesh, d, axis, [&](int64_t m) { return value(m, i); }));
}

TEST_P(Collectives, PermuteBothWays) {
  ThreadMesh tm(mesh);
  for (int64_t shift : {1, -1, 2, -3}) {
    std::vector<std::vector<float>> got(static_cast<size_t>(devices));
    Status s = tm.run([&](int64_t d, Communicator &comm) -> Status {
      std::vector<float> send = values(d, n), recv(static_cast<size_t>(n));
      VITC_TRY(comm.permute(axis, shift, send.data(), n, recv.data())->wait());
      got[static_cast<size_t>(d)] = recv;
      return Status::ok();
    });
    ASSERT_TRUE(s) << s.error().str();
    for (int64_t d = 0; d < devices; ++d) {
      int64_t from = ((mesh.coordinate(d, axis) - shift) % k + k) % k;
      EXPECT_EQ(got[static_cast<size_t>(d)], values(mesh.withCoordinate(d, axis, from), n))
          << "shift " << shift << " device " << d;
    }
  }
}

TEST_P(Collectives, PermuteInPlace) {
  ThreadMesh tm(mesh);
  std::vector<std::vector<float>> got(static_cast<size_t>(devices));
  Status s = tm.run([&](int64_t d, Communicator &comm) -> Status {
    std::vector<float> buffer = values(d, n);
    VITC_TRY(comm.permute(axis, 1, buffer.data(), n, buffer.data())->wait());
    got[static_cast<size_t>(d)] = buffer;
    return Status::ok();
  });
  ASSERT_TRUE(s) << s.error().str();
  for (int64_t d = 0; d < devices; ++d) {
    int64_t from = (mesh.coordinate(d, axis) - 1 + k) % k;
    EXPECT_EQ(got[static_cast<size_t>(d)], values(mesh.withCoordinate(d, axis, from), n));
  }
}

// Several collectives on both axes in flight at once, waited for in reverse order.
TEST_P(Collectives, ManyInFlightOnBothAxes) {
  ThreadMesh tm(mesh);
  int other = 1 - axis;
  int64_t ko = mesh.axisSize(other);
  for (int repeat = 0; repeat < 3; ++repeat) {
    Status s = tm.run([&](int64_t d, Communicator &comm) -> Status {
      std::vector<float> a = values(d, n), b = values(d + 10, ko * n), c = values(d + 20, n),
                         e = values(d + 30, n);
      std::vector<float> ra(static_cast<size_t>(k * n)), rb(static_cast<size_t>(n)),
          rc(static_cast<size_t>(n)), re(static_cast<size_t>(n));
      std::vector<std::unique_ptr<Request>> requests;
      requests.push_back(comm.allGather(axis, a.data(), n, ra.data()));
      requests.push_back(comm.reduceScatter(other, b.data(), n, rb.data()));
      requests.push_back(comm.permute(axis, 1, c.data(), n, rc.data()));
      requests.push_back(comm.allReduce(other, e.data(), n, re.data()));
      for (size_t i = requests.size(); i-- > 0;)
        VITC_TRY(requests[i]->wait());
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t x = 0; x < k; ++x)
          if (ra[static_cast<size_t>(x * n + i)] != value(mesh.withCoordinate(d, axis, x), i))
            return Error("all_gather in flight gave a wrong value");
        int64_t co = mesh.coordinate(d, other);
        if (rb[static_cast<size_t>(i)] !=
            orderedSum(mesh, d, other, [&](int64_t m) { return value(m + 10, co * n + i); }))
          return Error("reduce_scatter in flight gave a wrong value");
        int64_t from = mesh.withCoordinate(d, axis, (mesh.coordinate(d, axis) + k - 1) % k);
        if (rc[static_cast<size_t>(i)] != value(from + 20, i))
          return Error("permute in flight gave a wrong value");
        if (re[static_cast<size_t>(i)] !=
            orderedSum(mesh, d, other, [&](int64_t m) { return value(m + 30, i); }))
          return Error("all_reduce in flight gave a wrong value");
      }
      return Status::ok();
    });
    ASSERT_TRUE(s) << s.error().str();
  }
}

// A device computes between start and wait; the collective completes without it waiting, so the
// wait afterwards returns at once.
TEST_P(Collectives, CompletesWhileTheCallerComputes) {
  ThreadMesh tm(mesh);
  Status s = tm.run([&](int64_t d, Communicator &comm) -> Status {
    std::vector<float> send = values(d, n), recv(static_cast<size_t>(k * n), 0.0f);
    auto request = comm.allGather(axis, send.data(), n, recv.data());
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    auto t0 = std::chrono::steady_clock::now();
    VITC_TRY(request->wait());
    if (std::chrono::steady_clock::now() - t0 > std::chrono::milliseconds(150))
      return Error("the collective did not complete while its device was busy");
    return Status::ok();
  });
  ASSERT_TRUE(s) << s.error().str();
}

INSTANTIATE_TEST_SUITE_P(Meshes, Collectives,
                         testing::Values(MeshCase{1, 2, 0}, MeshCase{1, 2, 1}, MeshCase{2, 1, 0},
                                         MeshCase{2, 1, 1}, MeshCase{2, 2, 0}, MeshCase{2, 2, 1},
                                         MeshCase{1, 4, 0}, MeshCase{1, 4, 1}),
                         caseName);

} // namespace
} // namespace vitc::runtime
