// MPI collectives, failure notices, and the world as a ProcessGroup.
#include "runtime/mpi/mpi_runtime.h"

#include <mpi.h>

#include <algorithm>
#include <cassert>
#include <climits>
#include <cstring>
#include <functional>
#include <limits>
#include <thread>

namespace vitc::runtime {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kNoticeTag = 1;
constexpr int kPermuteTagLimit = 32000; // MPI guarantees tags up to 32767

int toInt(int64_t n) {
  assert(n >= 0 && n <= INT_MAX && "a message larger than MPI's int counts");
  return static_cast<int>(n);
}

// The runtime-owned buffers and requests of one collective. A collective abandoned before it
// completed is kept alive (buried) until MPI finishes, since MPI may still read and write them.
struct Transfer {
  std::vector<float> send, recv;
  std::vector<MPI_Request> requests;
  MPI_Comm comm = MPI_COMM_NULL; // which must outlive the requests too
};

// Whether a call of this process was abandoned at its timeout: it then makes no further MPI call,
// and MPI cannot be started again.
bool gAbandoned = false;

// The buffers of one call on the world's control communicator. A call abandoned at its timeout
// keeps them while its world lives, since MPI may still write into them until the process stops
// calling MPI.
struct ControlCall {
  MPI_Request request = MPI_REQUEST_NULL;
  int64_t send[2] = {0, 0}, recv[2] = {0, 0};
  int length = 0;
  std::string bytes, all;
  std::vector<int> lengths, offsets;
};

// Waits for a request as MpiRequest::complete does: polls it (driving MPI's progress), yields the
// core, and gives up at `deadline`.
bool pollUntil(MPI_Request &request, Clock::time_point deadline) {
  for (int polls = 0;; ++polls) {
    int done = 0;
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (done)
      return true;
    if (Clock::now() >= deadline)
      return false;
    // Oversubscribed ranks must leave the cores to the others.
    if (polls < 64)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

double seconds(std::chrono::milliseconds d) { return std::chrono::duration<double>(d).count(); }

class MpiWorld : public ProcessGroup, public std::enable_shared_from_this<MpiWorld> {
public:
  // MPI_Comm_dup blocks without a timeout: it comes right after MPI_Init, whose own start-up
  // exchange (which no MPI call can bound) has already seen every process arrive.
  MpiWorld(bool ownsMpi) : ownsMpi_(ownsMpi) {
    int rank = 0, size = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    rank_ = rank;
    size_ = size;
    MPI_Comm_dup(MPI_COMM_WORLD, &control_);
    postNoticeReceive();
  }

  ~MpiWorld() override {
    // After an abandoned call, MPI_Finalize would wait for the missing process as the call did,
    // and freeing a communicator with a collective pending crashes MPI: the process exits with
    // MPI as it is, and mpirun ends the job when it exits non-zero.
    if (!abandonedCalls_.empty())
      return;
    if (noticeRequest_ != MPI_REQUEST_NULL) {
      MPI_Cancel(&noticeRequest_);
      MPI_Wait(&noticeRequest_, MPI_STATUS_IGNORE);
    }
    for (const std::shared_ptr<Transfer> &t : buried_) {
      int done = 0;
      MPI_Testall(static_cast<int>(t->requests.size()), t->requests.data(), &done,
                  MPI_STATUSES_IGNORE);
    }
    MPI_Comm_free(&control_);
    if (ownsMpi_)
      MPI_Finalize();
  }

  int64_t rank() const override { return rank_; }
  int64_t size() const override { return size_; }
  bool abandoned() const override { return !abandonedCalls_.empty(); }

  Expected<std::unique_ptr<Communicator>> connect(const Mesh &mesh,
                                                  const CollectiveOptions &options) override;

  Status agree(const Status &local, std::chrono::milliseconds timeout) override {
    std::string_view what = "agreeing on the outcome with every process (MPI_Iallreduce)";
    if (abandoned())
      return local ? Status(unusable(what)) : ownError(local);
    if (!local && !noticed_)
      announceFailure();
    auto call = std::make_unique<ControlCall>();
    // The lowest rank whose failure is its own wins; echoes count only when nothing else failed.
    call->send[0] = local ? std::numeric_limits<int64_t>::max() : echo_ ? size_ + rank_ : rank_;
    MPI_Iallreduce(call->send, call->recv, 1, MPI_INT64_T, MPI_MIN, control_, &call->request);
    if (Status s = wait(call, what, timeout); !s)
      return local ? s : ownError(local);
    int64_t lowest = call->recv[0];
    ++epoch_;
    echo_ = false;
    if (noticed_) {
      noticed_ = false;
      postNoticeReceive();
    }
    if (lowest == std::numeric_limits<int64_t>::max())
      return Status::ok();
    int root = static_cast<int>(lowest < size_ ? lowest : lowest - size_);
    // The root's error, sent to everyone: "line col file\nmessage".
    if (rank_ == root)
      call->bytes = fmt::format("{} {} {}\n{}", local.error().loc().line, local.error().loc().col,
                                local.error().loc().file ? *local.error().loc().file : "",
                                local.error().message());
    call->length = static_cast<int>(call->bytes.size());
    std::string_view sending = "receiving the failed device's error (MPI_Ibcast)";
    MPI_Ibcast(&call->length, 1, MPI_INT, root, control_, &call->request);
    if (Status s = wait(call, sending, timeout); !s)
      return local ? s : ownError(local);
    call->bytes.resize(static_cast<size_t>(call->length));
    MPI_Ibcast(call->bytes.data(), call->length, MPI_CHAR, root, control_, &call->request);
    if (Status s = wait(call, sending, timeout); !s)
      return local ? s : ownError(local);
    const std::string &text = call->bytes;
    size_t newline = text.find('\n');
    std::string header = text.substr(0, newline), message = text.substr(newline + 1);
    int line = 0, col = 0, used = 0;
    std::sscanf(header.c_str(), "%d %d %n", &line, &col, &used);
    Loc loc;
    if (static_cast<size_t>(used) < header.size())
      loc = Loc::inFile(header.substr(static_cast<size_t>(used))).at(line, col);
    return makeError(loc, "device {}: {}", root, message);
  }

  Expected<std::vector<std::string>> gather(std::string_view bytes,
                                            std::chrono::milliseconds timeout) override {
    std::string_view what = "gathering every process's results on device 0 (MPI_Igather)";
    if (abandoned())
      return unusable(what);
    auto call = std::make_unique<ControlCall>();
    call->bytes.assign(bytes);
    call->length = toInt(static_cast<int64_t>(bytes.size()));
    call->lengths.resize(rank_ == 0 ? static_cast<size_t>(size_) : 0);
    MPI_Igather(&call->length, 1, MPI_INT, call->lengths.data(), 1, MPI_INT, 0, control_,
                &call->request);
    VITC_TRY(wait(call, what, timeout));
    call->offsets.resize(call->lengths.size());
    int64_t total = 0;
    for (size_t r = 0; r < call->lengths.size(); ++r) {
      call->offsets[r] = toInt(total);
      total += call->lengths[r];
    }
    call->all.assign(static_cast<size_t>(total), '\0');
    MPI_Igatherv(call->bytes.data(), call->length, MPI_CHAR, call->all.data(), call->lengths.data(),
                 call->offsets.data(), MPI_CHAR, 0, control_, &call->request);
    VITC_TRY(wait(call, "gathering every process's results on device 0 (MPI_Igatherv)", timeout));
    std::vector<std::string> out;
    for (size_t r = 0; r < call->lengths.size(); ++r)
      out.push_back(call->all.substr(static_cast<size_t>(call->offsets[r]),
                                     static_cast<size_t>(call->lengths[r])));
    return out;
  }

  Expected<std::string> broadcast(std::string_view bytes,
                                  std::chrono::milliseconds timeout) override {
    std::string_view what = "receiving device 0's data (MPI_Ibcast)";
    if (abandoned())
      return unusable(what);
    auto call = std::make_unique<ControlCall>();
    if (rank_ == 0)
      call->bytes.assign(bytes);
    // The size first, as a 64-bit count: a model's parameters can pass 2 GiB.
    call->send[0] = static_cast<int64_t>(call->bytes.size());
    MPI_Ibcast(call->send, 1, MPI_INT64_T, 0, control_, &call->request);
    VITC_TRY(wait(call, what, timeout));
    call->bytes.resize(static_cast<size_t>(call->send[0]));
    // In pieces of at most 1 GiB: MPI counts are ints.
    constexpr int64_t kPiece = int64_t{1} << 30;
    for (int64_t at = 0; at < call->send[0]; at += kPiece) {
      int count = static_cast<int>(std::min(kPiece, call->send[0] - at));
      MPI_Ibcast(call->bytes.data() + at, count, MPI_CHAR, 0, control_, &call->request);
      VITC_TRY(wait(call, what, timeout));
    }
    return std::move(call->bytes);
  }

  Expected<int64_t> minimum(int64_t value, std::chrono::milliseconds timeout) override {
    std::string_view what = "the smallest of every process's values (MPI_Iallreduce)";
    if (abandoned())
      return unusable(what);
    auto call = std::make_unique<ControlCall>();
    call->send[0] = value;
    MPI_Iallreduce(call->send, call->recv, 1, MPI_INT64_T, MPI_MIN, control_, &call->request);
    VITC_TRY(wait(call, what, timeout));
    return call->recv[0];
  }

  Status barrier(std::chrono::milliseconds timeout) override {
    std::string_view what = "the barrier of every process (MPI_Ibarrier)";
    if (abandoned())
      return unusable(what);
    auto call = std::make_unique<ControlCall>();
    MPI_Ibarrier(control_, &call->request);
    return wait(call, what, timeout);
  }

  // Whether another process announced a failure in this epoch; `device` gets which.
  bool failureNoticed(int64_t *device) {
    while (!noticed_) {
      int arrived = 0;
      MPI_Test(&noticeRequest_, &arrived, MPI_STATUS_IGNORE);
      if (!arrived)
        return false;
      if (notice_[0] == epoch_)
        noticed_ = true;
      else
        postNoticeReceive(); // a late notice from an earlier, already failed run
    }
    *device = notice_[1];
    return true;
  }
  // This process's next failure only echoes another's.
  void markEcho() { echo_ = true; }
  void bury(std::shared_ptr<Transfer> t) { buried_.push_back(std::move(t)); }
  // Whether an abandoned collective may still use `comm`: freeing it would crash MPI's progress
  // engine (libnbc keeps no reference), so it then stays allocated until MPI_Finalize.
  bool buriedOn(MPI_Comm comm) const {
    for (const std::shared_ptr<Transfer> &t : buried_)
      if (t->comm == comm)
        return true;
    return false;
  }

private:
  // Waits for `call`'s request; at the timeout abandons the call, keeping its buffers.
  Status wait(std::unique_ptr<ControlCall> &call, std::string_view what,
              std::chrono::milliseconds timeout) {
    if (pollUntil(call->request, Clock::now() + timeout))
      return Status::ok();
    abandonedCalls_.push_back(std::move(call));
    gAbandoned = true;
    return makeError(Loc{}, "{} timed out after {} s on device {}: some process never arrived",
                     what, seconds(timeout), rank_);
  }
  Error unusable(std::string_view what) const {
    return makeError(Loc{}, "{} is impossible on device {}: an earlier call timed out", what,
                     rank_);
  }
  // This process's own failure, as the agreement would have named it.
  Error ownError(const Status &local) const {
    return makeError(local.error().loc(), "device {}: {}", rank_, local.error().message());
  }

  void postNoticeReceive() {
    MPI_Irecv(notice_, 2, MPI_INT64_T, MPI_ANY_SOURCE, kNoticeTag, control_, &noticeRequest_);
  }
  void announceFailure() {
    announced_[0] = epoch_;
    announced_[1] = rank_;
    for (int64_t r = 0; r < size_; ++r) {
      if (r == rank_)
        continue;
      MPI_Request request;
      MPI_Isend(announced_, 2, MPI_INT64_T, static_cast<int>(r), kNoticeTag, control_, &request);
      MPI_Request_free(&request);
    }
  }

  bool ownsMpi_;
  int64_t rank_ = 0, size_ = 1;
  MPI_Comm control_ = MPI_COMM_NULL; // agreement, gathers and failure notices
  MPI_Request noticeRequest_ = MPI_REQUEST_NULL;
  int64_t notice_[2] = {0, 0};    // epoch, device
  int64_t announced_[2] = {0, 0}; // what this process sent
  int64_t epoch_ = 0;             // agreements so far: notices of other epochs are stale
  bool noticed_ = false;
  bool echo_ = false;
  std::vector<std::shared_ptr<Transfer>> buried_;
  std::vector<std::unique_ptr<ControlCall>> abandonedCalls_; // MPI may still write into them
};

class MpiRequest : public Request {
public:
  MpiRequest(std::shared_ptr<MpiWorld> world, std::shared_ptr<Transfer> t, float *recv,
             std::string what, int64_t device, const CollectiveOptions &options,
             std::chrono::nanoseconds modeled, TraceArgs args)
      : world_(std::move(world)), t_(std::move(t)), recv_(recv), what_(std::move(what)),
        device_(device), timeout_(options.timeout), tracer_(options.tracer), modeled_(modeled),
        args_(std::move(args)), start_(Clock::now()) {}

  ~MpiRequest() override {
    if (waited_)
      return;
    if (world_->abandoned()) { // no MPI calls any more: see ~MpiWorld
      world_->bury(t_);
      return;
    }
    int done = 0;
    MPI_Testall(static_cast<int>(t_->requests.size()), t_->requests.data(), &done,
                MPI_STATUSES_IGNORE);
    if (!done)
      world_->bury(t_);
  }

  Status wait() override {
    if (waited_)
      return result_;
    waited_ = true;
    result_ = complete();
    return result_;
  }

private:
  Status complete() {
    Clock::time_point timeoutAt = start_ + timeout_;
    for (int polls = 0;; ++polls) {
      int done = 0;
      MPI_Testall(static_cast<int>(t_->requests.size()), t_->requests.data(), &done,
                  MPI_STATUSES_IGNORE);
      if (done)
        break;
      int64_t failed = -1;
      if (world_->failureNoticed(&failed)) {
        world_->markEcho();
        world_->bury(t_);
        return makeError(Loc{}, "{} was abandoned because device {} failed", what_, failed);
      }
      if (Clock::now() >= timeoutAt) {
        world_->bury(t_);
        return makeError(Loc{},
                         "{} timed out after {} s on device {}: some device of the group never "
                         "arrived",
                         what_, std::chrono::duration<double>(timeout_).count(), device_);
      }
      // Oversubscribed ranks must leave the cores to the others.
      if (polls < 64)
        std::this_thread::yield();
      else
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    std::memcpy(recv_, t_->recv.data(), t_->recv.size() * sizeof(float));
    Clock::time_point end = start_ + std::chrono::duration_cast<Clock::duration>(modeled_);
    if (Clock::now() < end)
      std::this_thread::sleep_until(end);
    if (tracer_)
      tracer_->span(device_, kCommunicationTrack, what_.substr(0, what_.find(' ')), start_,
                    std::max(end, Clock::now()), args_);
    return Status::ok();
  }

  std::shared_ptr<MpiWorld> world_;
  std::shared_ptr<Transfer> t_;
  float *recv_;
  std::string what_;
  int64_t device_;
  std::chrono::milliseconds timeout_;
  Tracer *tracer_;
  std::chrono::nanoseconds modeled_;
  TraceArgs args_;
  Clock::time_point start_;
  bool waited_ = false;
  Status result_;
};

class MpiCommunicator : public Communicator {
public:
  MpiCommunicator(std::shared_ptr<MpiWorld> world, Mesh mesh, std::vector<MPI_Comm> comms,
                  CollectiveOptions options)
      : world_(std::move(world)), mesh_(std::move(mesh)), comms_(std::move(comms)),
        options_(std::move(options)), seq_(mesh_.axes.size(), 0) {}
  ~MpiCommunicator() override {
    for (MPI_Comm &c : comms_)
      if (!world_->abandoned() && !world_->buriedOn(c))
        MPI_Comm_free(&c);
  }

  int64_t device() const override { return world_->rank(); }
  const Mesh &mesh() const override { return mesh_; }
  Tracer *tracer() const override { return options_.tracer; }

  std::unique_ptr<Request> allGather(int axis, const float *send, int64_t count,
                                     float *recv) override {
    auto t = stage(axis, send, count, mesh_.axisSize(axis) * count);
    t->requests.resize(1);
    MPI_Iallgather(t->send.data(), toInt(count), MPI_FLOAT, t->recv.data(), toInt(count), MPI_FLOAT,
                   comms_[static_cast<size_t>(axis)], &t->requests[0]);
    return request(CollectiveKind::AllGather, axis, count, std::move(t), recv);
  }
  std::unique_ptr<Request> reduceScatter(int axis, const float *send, int64_t count,
                                         float *recv) override {
    auto t = stage(axis, send, mesh_.axisSize(axis) * count, count);
    t->requests.resize(1);
    MPI_Ireduce_scatter_block(t->send.data(), t->recv.data(), toInt(count), MPI_FLOAT, MPI_SUM,
                              comms_[static_cast<size_t>(axis)], &t->requests[0]);
    return request(CollectiveKind::ReduceScatter, axis, count, std::move(t), recv);
  }
  std::unique_ptr<Request> allReduce(int axis, const float *send, int64_t count,
                                     float *recv) override {
    auto t = stage(axis, send, count, count);
    t->requests.resize(1);
    MPI_Iallreduce(t->send.data(), t->recv.data(), toInt(count), MPI_FLOAT, MPI_SUM,
                   comms_[static_cast<size_t>(axis)], &t->requests[0]);
    return request(CollectiveKind::AllReduce, axis, count, std::move(t), recv);
  }
  std::unique_ptr<Request> permute(int axis, int64_t shift, const float *send, int64_t count,
                                   float *recv) override {
    auto t = stage(axis, send, count, count);
    int64_t k = mesh_.axisSize(axis), c = coordinate(axis);
    shift = ((shift % k) + k) % k;
    int tag = static_cast<int>(seq_[static_cast<size_t>(axis)] % kPermuteTagLimit);
    if (shift == 0) {
      t->recv = t->send;
    } else {
      MPI_Comm comm = comms_[static_cast<size_t>(axis)];
      t->requests.resize(2);
      MPI_Irecv(t->recv.data(), toInt(count), MPI_FLOAT, static_cast<int>((c - shift + k) % k), tag,
                comm, &t->requests[0]);
      MPI_Isend(t->send.data(), toInt(count), MPI_FLOAT, static_cast<int>((c + shift) % k), tag,
                comm, &t->requests[1]);
    }
    return request(CollectiveKind::Permute, axis, count, std::move(t), recv);
  }

private:
  std::shared_ptr<Transfer> stage(int axis, const float *send, int64_t sendCount,
                                  int64_t recvCount) {
    assert(axis >= 0 && axis < static_cast<int>(mesh_.axes.size()) && "no such mesh axis");
    auto t = std::make_shared<Transfer>();
    t->comm = comms_[static_cast<size_t>(axis)];
    t->send.assign(send, send + sendCount);
    t->recv.resize(static_cast<size_t>(recvCount));
    return t;
  }

  std::unique_ptr<Request> request(CollectiveKind kind, int axis, int64_t count,
                                   std::shared_ptr<Transfer> t, float *recv) {
    int64_t seq = seq_[static_cast<size_t>(axis)]++;
    const std::string &name = mesh_.axes[static_cast<size_t>(axis)].name;
    std::string members;
    for (int64_t i = 0; i < mesh_.axisSize(axis); ++i)
      members += (i ? ", " : "") + std::to_string(mesh_.withCoordinate(device(), axis, i));
    std::string what = fmt::format("{}({}) #{} over '{}' ({} {})", collectiveName(kind), name, seq,
                                   name, mesh_.axisSize(axis) == 1 ? "device" : "devices", members);
    std::chrono::nanoseconds modeled =
        options_.link.duration(kind, name, mesh_.axisSize(axis), count);
    return std::make_unique<MpiRequest>(
        world_, std::move(t), recv, std::move(what), device(), options_, modeled,
        TraceArgs{{"elements", std::to_string(count)}, {"seq", std::to_string(seq)}});
  }

  std::shared_ptr<MpiWorld> world_;
  Mesh mesh_;
  std::vector<MPI_Comm> comms_; // by axis: this device's group
  CollectiveOptions options_;
  std::vector<int64_t> seq_; // by axis: collectives started
};

Expected<std::unique_ptr<Communicator>> MpiWorld::connect(const Mesh &mesh,
                                                          const CollectiveOptions &options) {
  if (mesh.numDevices() != size_)
    return makeError(Loc{}, "the mesh ({}) has {} {} but MPI started {} {}", mesh.str(),
                     mesh.numDevices(), mesh.numDevices() == 1 ? "device" : "devices", size_,
                     size_ == 1 ? "process" : "processes");
  std::string what =
      fmt::format("connecting every process to mesh {} (MPI_Iallreduce)", mesh.str());
  if (abandoned())
    return unusable(what);
  // MPI_Comm_split has no non-blocking form, so every process first shows, within the timeout,
  // that it has arrived here with the same mesh: the splits that follow then find every process
  // already in them, and can hang only if a process stops in the instant between.
  auto call = std::make_unique<ControlCall>();
  int64_t fingerprint =
      static_cast<int64_t>(std::hash<std::string>{}(mesh.str()) >> 2); // leaves room to negate
  call->send[0] = fingerprint;
  call->send[1] = -fingerprint;
  MPI_Iallreduce(call->send, call->recv, 2, MPI_INT64_T, MPI_MIN, control_, &call->request);
  VITC_TRY(wait(call, what, options.timeout));
  if (call->recv[0] != -call->recv[1])
    return makeError(Loc{}, "the processes connect different meshes (device {}: {})", rank_,
                     mesh.str());
  std::vector<MPI_Comm> comms;
  for (int axis = 0; axis < static_cast<int>(mesh.axes.size()); ++axis) {
    MPI_Comm comm = MPI_COMM_NULL;
    MPI_Comm_split(MPI_COMM_WORLD, static_cast<int>(mesh.withCoordinate(rank_, axis, 0)),
                   static_cast<int>(mesh.coordinate(rank_, axis)), &comm);
    comms.push_back(comm);
  }
  return std::unique_ptr<Communicator>(
      std::make_unique<MpiCommunicator>(shared_from_this(), mesh, std::move(comms), options));
}

std::weak_ptr<MpiWorld> gWorld;

} // namespace

Expected<std::shared_ptr<ProcessGroup>> initMpi(int *argc, char ***argv) {
  if (std::shared_ptr<MpiWorld> world = gWorld.lock())
    return std::shared_ptr<ProcessGroup>(world);
  if (gAbandoned)
    return makeError(Loc{}, "an MPI call of this process timed out: MPI cannot be used again");
  int finalized = 0, initialized = 0;
  MPI_Finalized(&finalized);
  if (finalized)
    return makeError(Loc{}, "MPI was finalized already: start it once per process");
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      return makeError(Loc{}, "MPI failed to start");
  }
  auto world = std::make_shared<MpiWorld>(!initialized);
  gWorld = world;
  return std::shared_ptr<ProcessGroup>(world);
}

} // namespace vitc::runtime
