// MPI collectives, failure notices, and the world as a ProcessGroup.
#include "runtime/mpi/mpi_runtime.h"

#include <mpi.h>

#include <cassert>
#include <climits>
#include <cstring>
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

class MpiWorld : public ProcessGroup, public std::enable_shared_from_this<MpiWorld> {
public:
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

  Expected<std::unique_ptr<Communicator>> connect(const ir::Mesh &mesh,
                                                  const CollectiveOptions &options) override;

  Status agree(const Status &local) override {
    if (!local && !noticed_)
      announceFailure();
    // The lowest rank whose failure is its own wins; echoes count only when nothing else failed.
    int64_t mine = local ? std::numeric_limits<int64_t>::max() : echo_ ? size_ + rank_ : rank_;
    int64_t lowest = 0;
    MPI_Allreduce(&mine, &lowest, 1, MPI_INT64_T, MPI_MIN, control_);
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
    std::string text;
    if (rank_ == root)
      text = fmt::format("{} {} {}\n{}", local.error().loc().line, local.error().loc().col,
                         local.error().loc().file ? *local.error().loc().file : "",
                         local.error().message());
    int length = static_cast<int>(text.size());
    MPI_Bcast(&length, 1, MPI_INT, root, control_);
    text.resize(static_cast<size_t>(length));
    MPI_Bcast(text.data(), length, MPI_CHAR, root, control_);
    size_t newline = text.find('\n');
    std::string header = text.substr(0, newline), message = text.substr(newline + 1);
    int line = 0, col = 0, used = 0;
    std::sscanf(header.c_str(), "%d %d %n", &line, &col, &used);
    Loc loc;
    if (static_cast<size_t>(used) < header.size())
      loc = Loc::inFile(header.substr(static_cast<size_t>(used))).at(line, col);
    return makeError(loc, "device {}: {}", root, message);
  }

  std::vector<std::string> gather(std::string_view bytes) override {
    int length = toInt(static_cast<int64_t>(bytes.size()));
    std::vector<int> lengths(rank_ == 0 ? static_cast<size_t>(size_) : 0);
    MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, control_);
    std::vector<int> offsets(lengths.size());
    int64_t total = 0;
    for (size_t r = 0; r < lengths.size(); ++r) {
      offsets[r] = toInt(total);
      total += lengths[r];
    }
    std::string all(static_cast<size_t>(total), '\0');
    MPI_Gatherv(bytes.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(),
                MPI_CHAR, 0, control_);
    std::vector<std::string> out;
    for (size_t r = 0; r < lengths.size(); ++r)
      out.push_back(all.substr(static_cast<size_t>(offsets[r]), static_cast<size_t>(lengths[r])));
    return out;
  }

  void barrier() override { MPI_Barrier(control_); }

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
  MpiCommunicator(std::shared_ptr<MpiWorld> world, ir::Mesh mesh, std::vector<MPI_Comm> comms,
                  CollectiveOptions options)
      : world_(std::move(world)), mesh_(std::move(mesh)), comms_(std::move(comms)),
        options_(std::move(options)), seq_(mesh_.axes.size(), 0) {}
  ~MpiCommunicator() override {
    for (MPI_Comm &c : comms_)
      if (!world_->buriedOn(c))
        MPI_Comm_free(&c);
  }

  int64_t device() const override { return world_->rank(); }
  const ir::Mesh &mesh() const override { return mesh_; }
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
    std::string what = fmt::format("{}({}) #{} over '{}' (devices {})", collectiveName(kind), name,
                                   seq, name, members);
    std::chrono::nanoseconds modeled =
        options_.link.duration(kind, name, mesh_.axisSize(axis), count);
    return std::make_unique<MpiRequest>(
        world_, std::move(t), recv, std::move(what), device(), options_, modeled,
        TraceArgs{{"elements", std::to_string(count)}, {"seq", std::to_string(seq)}});
  }

  std::shared_ptr<MpiWorld> world_;
  ir::Mesh mesh_;
  std::vector<MPI_Comm> comms_; // by axis: this device's group
  CollectiveOptions options_;
  std::vector<int64_t> seq_; // by axis: collectives started
};

Expected<std::unique_ptr<Communicator>> MpiWorld::connect(const ir::Mesh &mesh,
                                                          const CollectiveOptions &options) {
  if (mesh.numDevices() != size_)
    return makeError(Loc{}, "the mesh ({}) has {} devices but MPI started {} processes", mesh.str(),
                     mesh.numDevices(), size_);
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
