// Shared-memory collectives: the mailbox, the copy engine, and the requests.
#include "runtime/thread_mesh.h"

#include <algorithm>
#include <cassert>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <tuple>

namespace vitc::runtime {
namespace {

using Clock = std::chrono::steady_clock;

// Helper threads that run copy tasks in submission order.
class CopyEngine {
public:
  explicit CopyEngine(int threads) {
    for (int i = 0; i < threads; ++i)
      workers_.emplace_back([this] { work(); });
  }
  ~CopyEngine() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread &t : workers_)
      t.join();
  }
  void submit(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(task));
    }
    cv_.notify_one();
  }

private:
  void work() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty())
          return;
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

enum class Phase {
  Gathering, // waiting for members to post
  Copying,   // every member posted; the engine is moving data
  Done,      // data in place; complete once `completeAt` has passed
  Failed,    // abandoned before any data moved; `error` says why
};

struct Post {
  const float *send = nullptr;
  float *recv = nullptr;
  bool arrived = false;
};

// One collective of one group: the rendezvous of its members.
struct Collective {
  CollectiveKind kind;
  int axis = 0;
  int64_t count = 0;
  int64_t shift = 0; // permute only, in [0, k)
  int64_t seq = 0;
  std::vector<int64_t> members; // device ids, by coordinate
  std::vector<Post> posts;      // by coordinate
  int64_t arrived = 0;
  Phase phase = Phase::Gathering;
  std::string error;
  int tasksLeft = 0;
  Clock::time_point completeAt;

  int64_t k() const { return static_cast<int64_t>(members.size()); }
  int64_t sendCount() const { return kind == CollectiveKind::ReduceScatter ? k() * count : count; }
  int64_t recvCount() const { return kind == CollectiveKind::AllGather ? k() * count : count; }
};

std::string deviceList(const std::vector<int64_t> &devices) {
  std::string out;
  for (size_t i = 0; i < devices.size(); ++i) {
    if (i)
      out += i + 1 == devices.size() ? " and " : ", ";
    out += std::to_string(devices[i]);
  }
  return out;
}

std::string describe(const Collective &c, const Mesh &mesh) {
  std::string members;
  for (int64_t d : c.members)
    members += (members.empty() ? "" : ", ") + std::to_string(d);
  return fmt::format("{} #{} over '{}' ({} {})", collectiveName(c.kind), c.seq,
                     mesh.axes[static_cast<size_t>(c.axis)].name,
                     c.members.size() == 1 ? "device" : "devices", members);
}

std::string describeCall(CollectiveKind kind, int64_t count, int64_t shift) {
  std::string s =
      fmt::format("{} of {} element{}", collectiveName(kind), count, count == 1 ? "" : "s");
  if (kind == CollectiveKind::Permute)
    s += fmt::format(" shifted by {}", shift);
  return s;
}

bool overlaps(const float *a, int64_t an, const float *b, int64_t bn) {
  auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return x < y + static_cast<uintptr_t>(bn) * sizeof(float) &&
         y < x + static_cast<uintptr_t>(an) * sizeof(float);
}

// Whether some member's receive buffer overlaps some member's send buffer.
bool aliases(const Collective &c) {
  for (const Post &r : c.posts)
    for (const Post &s : c.posts)
      if (overlaps(r.recv, c.recvCount(), s.send, c.sendCount()))
        return true;
  return false;
}

// The result of member `d` (by coordinate) into `out`, reading only send buffers.
void compute(const Collective &c, int64_t d, float *out) {
  int64_t k = c.k(), n = c.count;
  size_t bytes = static_cast<size_t>(n) * sizeof(float);
  switch (c.kind) {
  case CollectiveKind::AllGather:
    for (int64_t m = 0; m < k; ++m)
      std::memcpy(out + m * n, c.posts[static_cast<size_t>(m)].send, bytes);
    return;
  case CollectiveKind::ReduceScatter: {
    std::memcpy(out, c.posts[0].send + d * n, bytes);
    for (int64_t m = 1; m < k; ++m) {
      const float *in = c.posts[static_cast<size_t>(m)].send + d * n;
      for (int64_t i = 0; i < n; ++i)
        out[i] += in[i];
    }
    return;
  }
  case CollectiveKind::AllReduce: {
    std::memcpy(out, c.posts[0].send, bytes);
    for (int64_t m = 1; m < k; ++m) {
      const float *in = c.posts[static_cast<size_t>(m)].send;
      for (int64_t i = 0; i < n; ++i)
        out[i] += in[i];
    }
    return;
  }
  case CollectiveKind::Permute:
    std::memcpy(out, c.posts[static_cast<size_t>((d - c.shift + k) % k)].send, bytes);
    return;
  }
}

// All-reduce of elements [lo, hi) for every member, through a small buffer so that it is correct
// in place (recv == send) too: every send element of the range is read before any is written.
void allReduceRange(const Collective &c, int64_t lo, int64_t hi) {
  constexpr int64_t kBlock = 2048;
  float sum[kBlock];
  for (int64_t b = lo; b < hi; b += kBlock) {
    int64_t n = std::min(kBlock, hi - b);
    std::memcpy(sum, c.posts[0].send + b, static_cast<size_t>(n) * sizeof(float));
    for (size_t m = 1; m < c.posts.size(); ++m) {
      const float *in = c.posts[m].send + b;
      for (int64_t i = 0; i < n; ++i)
        sum[i] += in[i];
    }
    for (const Post &p : c.posts)
      std::memcpy(p.recv + b, sum, static_cast<size_t>(n) * sizeof(float));
  }
}

} // namespace

class ThreadCommunicator;

struct ThreadMesh::State {
  using Key = std::tuple<int, int64_t, int64_t>; // axis, first device of the group, sequence

  Mesh mesh;
  ThreadMeshOptions options;
  std::mutex mu;
  std::condition_variable cv;
  std::map<Key, std::shared_ptr<Collective>> open; // collectives some member has not joined
  std::vector<std::vector<int64_t>> seq;           // [device][axis]: next sequence number
  std::map<std::pair<int, int64_t>, Clock::time_point> linkFree; // when a group's link is idle
  std::vector<bool> finished;
  std::vector<bool> secondary; // the device's error only echoes another device's failure
  std::optional<std::pair<int64_t, Error>> primary, echo; // first root-cause and echoed failures
  bool failed = false;
  int64_t failedDevice = -1;
  std::vector<std::unique_ptr<ThreadCommunicator>> comms;
  std::unique_ptr<CopyEngine> engine;

  // Called with `mu` held.
  void resetLocked() {
    open.clear();
    linkFree.clear();
    size_t n = static_cast<size_t>(mesh.numDevices());
    seq.assign(n, std::vector<int64_t>(mesh.axes.size(), 0));
    finished.assign(n, false);
    secondary.assign(n, false);
    primary.reset();
    echo.reset();
    failed = false;
    failedDevice = -1;
  }

  void abandon(Collective &c, std::string error) {
    c.phase = Phase::Failed;
    c.error = std::move(error);
    cv.notify_all();
  }

  // Every member has posted: start moving data. Called with `mu` held.
  void launch(const std::shared_ptr<Collective> &c, Clock::time_point now) {
    c->phase = Phase::Copying;
    c->completeAt = now;
    const std::string &axisName = mesh.axes[static_cast<size_t>(c->axis)].name;
    std::chrono::nanoseconds modeled = options.link.duration(c->kind, axisName, c->k(), c->count);
    if (modeled.count() > 0) {
      Clock::time_point &free = linkFree[{c->axis, c->members[0]}];
      Clock::time_point start = std::max(now, free);
      free = start + std::chrono::duration_cast<Clock::duration>(modeled);
      c->completeAt = free;
    }
    std::vector<std::function<void()>> tasks;
    int64_t k = c->k();
    if (c->kind == CollectiveKind::AllReduce) {
      int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(k, c->count / 4096));
      for (int64_t i = 0; i < chunks; ++i) {
        int64_t lo = c->count * i / chunks, hi = c->count * (i + 1) / chunks;
        tasks.push_back([c, lo, hi] { allReduceRange(*c, lo, hi); });
      }
    } else if (aliases(*c)) {
      // Some result would overwrite data another member still has to read: stage all results.
      tasks.push_back([c, k] {
        std::vector<std::vector<float>> results(static_cast<size_t>(k));
        for (int64_t d = 0; d < k; ++d) {
          results[static_cast<size_t>(d)].resize(static_cast<size_t>(c->recvCount()));
          compute(*c, d, results[static_cast<size_t>(d)].data());
        }
        for (int64_t d = 0; d < k; ++d)
          std::memcpy(c->posts[static_cast<size_t>(d)].recv, results[static_cast<size_t>(d)].data(),
                      static_cast<size_t>(c->recvCount()) * sizeof(float));
      });
    } else {
      for (int64_t d = 0; d < k; ++d)
        tasks.push_back([c, d] { compute(*c, d, c->posts[static_cast<size_t>(d)].recv); });
    }
    c->tasksLeft = static_cast<int>(tasks.size());
    for (std::function<void()> &task : tasks)
      engine->submit([this, c, task = std::move(task)] {
        task();
        std::lock_guard<std::mutex> lock(mu);
        if (--c->tasksLeft > 0)
          return;
        c->phase = Phase::Done;
        c->completeAt = std::max(c->completeAt, Clock::now());
        cv.notify_all();
      });
  }
};

namespace {

class ThreadRequest : public Request {
public:
  ThreadRequest(ThreadMesh::State &st, std::shared_ptr<Collective> c, int64_t device,
                Clock::time_point postedAt)
      : st_(st), c_(std::move(c)), device_(device), postedAt_(postedAt) {}

  ~ThreadRequest() override {
    if (waited_)
      return;
    std::unique_lock<std::mutex> lock(st_.mu);
    // Never leave the engine writing into buffers that are about to be freed.
    st_.cv.wait(lock, [&] { return c_->phase != Phase::Copying; });
    if (c_->phase == Phase::Gathering)
      st_.abandon(*c_, fmt::format("{} was abandoned by device {} (its request was dropped)",
                                   describe(*c_, st_.mesh), device_));
  }

  Status wait() override {
    if (waited_)
      return result_;
    result_ = waitLocked();
    waited_ = true;
    return result_;
  }

private:
  Status waitLocked() {
    std::unique_lock<std::mutex> lock(st_.mu);
    Clock::time_point timeoutAt = postedAt_ + st_.options.timeout;
    for (;;) {
      switch (c_->phase) {
      case Phase::Copying:
        st_.cv.wait(lock);
        continue;
      case Phase::Done:
        if (Clock::now() < c_->completeAt) {
          st_.cv.wait_until(lock, c_->completeAt);
          continue;
        }
        record();
        return Status::ok();
      case Phase::Failed:
        st_.secondary[static_cast<size_t>(device_)] = true;
        return Error(c_->error);
      case Phase::Gathering:
        break;
      }
      if (st_.failed) {
        st_.secondary[static_cast<size_t>(device_)] = true;
        st_.abandon(*c_, fmt::format("{} was abandoned because device {} failed",
                                     describe(*c_, st_.mesh), st_.failedDevice));
        return Error(c_->error);
      }
      std::vector<int64_t> missing, gone;
      for (size_t m = 0; m < c_->posts.size(); ++m)
        if (!c_->posts[m].arrived) {
          missing.push_back(c_->members[m]);
          if (st_.finished[static_cast<size_t>(c_->members[m])])
            gone.push_back(c_->members[m]);
        }
      if (!gone.empty() && gone.size() == missing.size()) {
        st_.abandon(*c_,
                    fmt::format("{} can never complete: device{} {} finished without joining it",
                                describe(*c_, st_.mesh), missing.size() > 1 ? "s" : "",
                                deviceList(missing)));
        return Error(c_->error);
      }
      if (Clock::now() >= timeoutAt) {
        st_.abandon(*c_, fmt::format("{} timed out after {} s: device{} {} never arrived",
                                     describe(*c_, st_.mesh),
                                     std::chrono::duration<double>(st_.options.timeout).count(),
                                     missing.size() > 1 ? "s" : "", deviceList(missing)));
        return Error(c_->error);
      }
      st_.cv.wait_until(lock, timeoutAt);
    }
  }

  void record() {
    Tracer *tracer = st_.options.tracer;
    if (!tracer)
      return;
    const std::string &axis = st_.mesh.axes[static_cast<size_t>(c_->axis)].name;
    tracer->span(device_, kCommunicationTrack,
                 fmt::format("{}({})", collectiveName(c_->kind), axis), postedAt_, c_->completeAt,
                 {{"elements", std::to_string(c_->count)}, {"seq", std::to_string(c_->seq)}});
  }

  ThreadMesh::State &st_;
  std::shared_ptr<Collective> c_;
  int64_t device_;
  Clock::time_point postedAt_;
  bool waited_ = false;
  Status result_;
};

} // namespace

class ThreadCommunicator : public Communicator {
public:
  ThreadCommunicator(ThreadMesh::State &st, int64_t device) : st_(st), device_(device) {}
  int64_t device() const override { return device_; }
  const Mesh &mesh() const override { return st_.mesh; }
  Tracer *tracer() const override { return st_.options.tracer; }

  std::unique_ptr<Request> allGather(int axis, const float *send, int64_t count,
                                     float *recv) override {
    return post(CollectiveKind::AllGather, axis, 0, send, count, recv);
  }
  std::unique_ptr<Request> reduceScatter(int axis, const float *send, int64_t count,
                                         float *recv) override {
    return post(CollectiveKind::ReduceScatter, axis, 0, send, count, recv);
  }
  std::unique_ptr<Request> allReduce(int axis, const float *send, int64_t count,
                                     float *recv) override {
    return post(CollectiveKind::AllReduce, axis, 0, send, count, recv);
  }
  std::unique_ptr<Request> permute(int axis, int64_t shift, const float *send, int64_t count,
                                   float *recv) override {
    return post(CollectiveKind::Permute, axis, shift, send, count, recv);
  }

private:
  std::unique_ptr<Request> post(CollectiveKind kind, int axis, int64_t shift, const float *send,
                                int64_t count, float *recv) {
    const Mesh &mesh = st_.mesh;
    assert(axis >= 0 && axis < static_cast<int>(mesh.axes.size()) && "no such mesh axis");
    int64_t k = mesh.axisSize(axis);
    shift = ((shift % k) + k) % k;
    int64_t coord = mesh.coordinate(device_, axis);
    int64_t first = mesh.withCoordinate(device_, axis, 0);
    std::lock_guard<std::mutex> lock(st_.mu);
    Clock::time_point now = Clock::now();
    int64_t seq = st_.seq[static_cast<size_t>(device_)][static_cast<size_t>(axis)]++;
    ThreadMesh::State::Key key{axis, first, seq};
    auto it = st_.open.find(key);
    if (it == st_.open.end()) {
      auto c = std::make_shared<Collective>();
      c->kind = kind;
      c->axis = axis;
      c->count = count;
      c->shift = shift;
      c->seq = seq;
      for (int64_t i = 0; i < k; ++i)
        c->members.push_back(mesh.withCoordinate(device_, axis, i));
      c->posts.resize(static_cast<size_t>(k));
      it = st_.open.emplace(key, std::move(c)).first;
    }
    std::shared_ptr<Collective> c = it->second;
    Post &p = c->posts[static_cast<size_t>(coord)];
    p = Post{send, recv, true};
    ++c->arrived;
    if (c->phase == Phase::Gathering &&
        (c->kind != kind || c->count != count || c->shift != shift)) {
      int64_t other = -1;
      for (size_t m = 0; m < c->posts.size() && other < 0; ++m)
        if (c->posts[m].arrived && c->members[m] != device_)
          other = c->members[m];
      st_.abandon(*c, fmt::format("devices {} and {} disagree on collective #{} over '{}': {} "
                                  "against {}",
                                  other, device_, seq, mesh.axes[static_cast<size_t>(axis)].name,
                                  describeCall(c->kind, c->count, c->shift),
                                  describeCall(kind, count, shift)));
    }
    if (c->arrived == k) {
      st_.open.erase(it);
      if (c->phase == Phase::Gathering)
        st_.launch(c, now);
    }
    return std::make_unique<ThreadRequest>(st_, std::move(c), device_, now);
  }

  ThreadMesh::State &st_;
  int64_t device_;
};

ThreadMesh::ThreadMesh(Mesh mesh, ThreadMeshOptions options)
    : state_(std::make_unique<State>()) {
  state_->mesh = std::move(mesh);
  state_->options = std::move(options);
  int threads = state_->options.copyThreads;
  if (threads <= 0)
    threads = static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
  state_->engine = std::make_unique<CopyEngine>(threads);
  for (int64_t d = 0; d < state_->mesh.numDevices(); ++d)
    state_->comms.push_back(std::make_unique<ThreadCommunicator>(*state_, d));
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->resetLocked();
}

ThreadMesh::~ThreadMesh() {
  // Stop the engine first: its tasks refer to the state.
  state_->engine.reset();
}

const Mesh &ThreadMesh::mesh() const { return state_->mesh; }

Communicator &ThreadMesh::communicator(int64_t device) {
  assert(device >= 0 && device < state_->mesh.numDevices() && "no such device");
  return *state_->comms[static_cast<size_t>(device)];
}

void ThreadMesh::reset() {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->resetLocked();
}

void ThreadMesh::fail(int64_t device, const Error &error) {
  std::lock_guard<std::mutex> lock(state_->mu);
  State &st = *state_;
  bool echo = st.secondary[static_cast<size_t>(device)];
  auto &slot = echo ? st.echo : st.primary;
  if (!slot)
    slot.emplace(device, error);
  // Name the root cause in the errors of collectives abandoned from now on.
  if (!st.failed || (!echo && st.primary->first == device))
    st.failedDevice = device;
  st.failed = true;
  st.cv.notify_all();
}

void ThreadMesh::finish(int64_t device) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->finished[static_cast<size_t>(device)] = true;
  state_->cv.notify_all();
}

Status ThreadMesh::run(const DeviceBody &body) {
  reset();
  int64_t n = state_->mesh.numDevices();
  auto device = [&](int64_t d) {
    Status s = body(d, communicator(d));
    if (!s)
      fail(d, s.error());
    finish(d);
  };
  if (n == 1) {
    device(0);
  } else {
    std::vector<std::thread> threads;
    for (int64_t d = 0; d < n; ++d)
      threads.emplace_back(device, d);
    for (std::thread &t : threads)
      t.join();
  }
  std::lock_guard<std::mutex> lock(state_->mu);
  const auto &root = state_->primary ? state_->primary : state_->echo;
  if (!root)
    return Status::ok();
  return makeError(root->second.loc(), "device {}: {}", root->first, root->second.message());
}

} // namespace vitc::runtime
