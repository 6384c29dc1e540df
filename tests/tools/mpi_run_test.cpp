// `vitc run --runtime=mpi` under mpirun: every device a process, the same logits as the reference,
// with micro-batches too, and a stalled process ends the run with an error instead of a hang.
#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <spawn.h>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <gtest/gtest.h>

#include "frontend/formats/npy.h"
#include "tests/common/fixtures.h"
#include "tests/common/subprocess.h"

extern char **environ;

namespace vitc {
namespace {

namespace fs = std::filesystem;

struct MpiCase {
  const char *fixture;
  const char *mesh;
  int processes;
};

class MpiRun : public ::testing::TestWithParam<MpiCase> {};

TEST_P(MpiRun, MatchesTheReference) {
  const MpiCase &c = GetParam();
  std::string dir =
      test::makeTempDir(std::string("mpi-") + c.fixture + std::to_string(c.processes));
  std::string fx = test::sourcePath(std::string("tests/fixtures/") + c.fixture);
  bool spec = std::filesystem::exists(fx + "/model.vit");
  std::string weights =
      std::filesystem::exists(fx + "/model.npz") ? fx + "/model.npz" : fx + "/model.safetensors";
  auto r = test::runCommand(
      {"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", std::to_string(c.processes),
       VITC_BINARY, "run", spec ? fx + "/model.vit" : fx, "--weights", weights, "--input",
       fx + "/input.npy", "--output", dir + "/out.npy", "--mesh", c.mesh, "--runtime=mpi"},
      {}, 120);
  ASSERT_EQ(r.exit, 0) << r.err;
  auto got = formats::readNpy(dir + "/out.npy");
  auto want = formats::readNpy(fx + "/logits.npy");
  ASSERT_TRUE(got && want);
  EXPECT_LE(test::maxAbsDiff(*got, *want), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(All, MpiRun,
                         ::testing::Values(MpiCase{"parallel_map", "data=1,model=2", 2},
                                           MpiCase{"parallel_map", "data=2,model=2", 4},
                                           MpiCase{"bv_map", "data=1,model=4", 4},
                                           MpiCase{"tv_tok", "data=2,model=1", 2}),
                         [](const auto &info) {
                           return std::string(info.param.fixture) + "_" +
                                  std::to_string(info.param.processes);
                         });

struct MicroCase {
  int64_t data, model;
  const char *backend;
};

void PrintTo(const MicroCase &c, std::ostream *os) {
  *os << fmt::format("data={}, model={}, {}", c.data, c.model, c.backend);
}

class MpiRunMicroBatches : public ::testing::TestWithParam<MicroCase> {};

// Every process runs every micro-batch (each run is collective); rank 0 joins the outputs.
TEST_P(MpiRunMicroBatches, MatchTheReference) {
  const MicroCase &c = GetParam();
  std::string name = fmt::format("mpi-micro-d{}m{}-{}", c.data, c.model, c.backend);
  std::string dir = test::makeTempDir(name);
  std::string fx = test::sourcePath("tests/fixtures/parallel_map");
  std::ofstream(dir + "/layout.json") << fmt::format(
      R"({{"mesh": {{"data": {}, "model": {}}}, "microbatches": 2}})", c.data, c.model);
  // Two micro-batches, each split over the data axis: the fixture's 2 images, `data` times over.
  auto images = formats::readNpy(fx + "/input.npy");
  auto logits = formats::readNpy(fx + "/logits.npy");
  ASSERT_TRUE(images && logits);
  ASSERT_TRUE(formats::writeNpy(dir + "/input.npy", test::repeatBatch(*images, c.data)));
  auto r = test::runCommand({"mpirun",
                             "--allow-run-as-root",
                             "--oversubscribe",
                             "-np",
                             std::to_string(c.data * c.model),
                             VITC_BINARY,
                             "run",
                             fx + "/model.vit",
                             "--weights",
                             fx + "/model.safetensors",
                             "--input",
                             dir + "/input.npy",
                             "--output",
                             dir + "/out.npy",
                             "--layout",
                             dir + "/layout.json",
                             "--backend",
                             c.backend,
                             "--runtime=mpi",
                             "--collective-timeout",
                             "30"},
                            {}, 180);
  ASSERT_EQ(r.exit, 0) << r.err;
  auto got = formats::readNpy(dir + "/out.npy");
  ASSERT_TRUE(got);
  Tensor want = test::repeatBatch(*logits, c.data);
  ASSERT_EQ(got->shape(), want.shape());
  EXPECT_LE(test::maxAbsDiff(*got, want), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(All, MpiRunMicroBatches,
                         ::testing::Values(MicroCase{2, 1, "llvm"}, MicroCase{1, 2, "llvm"},
                                           MicroCase{1, 2, "interpreter"}, MicroCase{2, 2, "llvm"}),
                         [](const auto &info) {
                           return fmt::format("d{}m{}_{}", info.param.data, info.param.model,
                                              info.param.backend);
                         });

TEST(MpiRun, WrongProcessCountIsAnError) {
  std::string fx = test::sourcePath("tests/fixtures/parallel_map");
  auto r = test::runCommand({"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "3",
                             VITC_BINARY, "run", fx + "/model.vit", "--weights", "random:0",
                             "--input", fx + "/input.npy", "--output", "/tmp/never.npy", "--mesh",
                             "data=1,model=2", "--runtime=mpi"},
                            {}, 120);
  EXPECT_NE(r.exit, 0);
  EXPECT_NE(r.err.find("has 2 devices but MPI started 3 processes"), std::string::npos) << r.err;
  // A world of one process is one process.
  auto one = test::runCommand({"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "1",
                               VITC_BINARY, "run", fx + "/model.vit", "--weights", "random:0",
                               "--input", fx + "/input.npy", "--output", "/tmp/never.npy", "--mesh",
                               "data=1,model=2", "--runtime=mpi"},
                              {}, 120);
  EXPECT_NE(one.exit, 0);
  EXPECT_NE(one.err.find("has 2 devices but MPI started 1 process: run with mpirun -np 2"),
            std::string::npos)
      << one.err;
}

// Starts `args` with stderr into `errFile`; returns its pid.
pid_t spawn(const std::vector<std::string> &args, const std::string &errFile) {
  std::vector<char *> argv;
  for (const std::string &a : args)
    argv.push_back(const_cast<char *>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, errFile.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  pid_t pid = 0;
  posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

// The ranks mpirun `parent` started, by rank (their environment says which).
std::map<int, pid_t> ranksOf(pid_t parent) {
  std::map<int, pid_t> ranks;
  for (const auto &e : fs::directory_iterator("/proc")) {
    std::string stat = test::slurp((e.path() / "stat").string());
    size_t close = stat.rfind(')');
    if (close == std::string::npos)
      continue;
    std::istringstream rest(stat.substr(close + 1));
    std::string state;
    long ppid = 0;
    rest >> state >> ppid;
    if (ppid != parent)
      continue;
    std::istringstream env(test::slurp((e.path() / "environ").string()));
    std::string key = "OMPI_COMM_WORLD_RANK=";
    for (std::string var; std::getline(env, var, '\0');)
      if (var.rfind(key, 0) == 0)
        ranks[std::stoi(var.substr(key.size()))] =
            static_cast<pid_t>(std::stol(e.path().filename().string()));
  }
  return ranks;
}

// CPU seconds `pid` has used (user + system), or -1 once it is gone.
double cpuSeconds(pid_t pid) {
  std::string stat = test::slurp(fmt::format("/proc/{}/stat", pid));
  size_t close = stat.rfind(')');
  if (close == std::string::npos)
    return -1;
  std::istringstream rest(stat.substr(close + 2));
  std::vector<std::string> fields; // from field 3, "state"
  for (std::string f; rest >> f;)
    fields.push_back(f);
  if (fields.size() < 13)
    return -1;
  double ticks = std::stod(fields[11]) + std::stod(fields[12]); // utime, stime
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// What became of a 2-process mpirun job of vitc with `vitcArgs` (on a data=1,model=2 mesh, the
// interpreter, a 3 s collective timeout) after rank `stopped` was stopped (SIGSTOP: alive, never
// answering) once it had worked for a while (past MPI_Init, which no timeout can bound: a process
// stopped before it would hold the others in MPI's own start-up) and `ready` holds.
struct StalledJob {
  bool started = false, ended = false;
  int status = 0;
  double seconds = 0; // from the stop to mpirun's end
  std::string err;
};

StalledJob stallOneRank(
    const std::vector<std::string> &vitcArgs, int stopped, const std::string &dir,
    const std::function<bool()> &ready = [] { return true; }) {
  constexpr double kWorkSeconds = 1.0;
  StalledJob job;
  std::vector<std::string> args{"mpirun",   "--allow-run-as-root", "--oversubscribe", "-np", "2",
                                VITC_BINARY};
  args.insert(args.end(), vitcArgs.begin(), vitcArgs.end());
  args.insert(args.end(), {"--mesh", "data=1,model=2", "--runtime=mpi", "--backend=interpreter",
                           "--collective-timeout", "3"});
  pid_t pid = spawn(args, dir + "/err.txt");
  if (pid <= 0)
    return job;
  std::map<int, pid_t> ranks;
  // Ends whatever is left of the job; a rank is killed only while it is still this binary, in
  // case mpirun ended it and its pid was reused.
  std::string vitc = fs::canonical(VITC_BINARY).string();
  auto cleanUp = [&](bool mpirunEnded) {
    for (auto [rank, p] : ranks) {
      std::error_code ec;
      if (fs::read_symlink(fmt::format("/proc/{}/exe", p), ec) != vitc || ec)
        continue;
      kill(p, SIGKILL);
      kill(p, SIGCONT);
    }
    if (!mpirunEnded) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  };
  auto going = [&] {
    return ranks.size() == 2 && cpuSeconds(ranks[stopped]) >= kWorkSeconds && ready();
  };
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline && !going()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (ranks.size() < 2)
      ranks = ranksOf(pid);
  }
  if (!going()) {
    cleanUp(false);
    job.err = test::slurp(dir + "/err.txt");
    return job;
  }
  job.started = true;
  kill(ranks[stopped], SIGSTOP);
  auto start = std::chrono::steady_clock::now();
  // A timeout in a collective, as long again to agree on it, then mpirun ends the job.
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(45)) {
    if (waitpid(pid, &job.status, WNOHANG) == pid) {
      job.ended = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  job.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  cleanUp(job.ended);
  job.err = test::slurp(dir + "/err.txt");
  return job;
}

// Whether `err` holds the live rank's one line, naming the 3 s timeout and itself.
bool namesTheTimeout(const std::string &err, int device) {
  std::istringstream lines(err);
  for (std::string l; std::getline(lines, l);)
    if (l.rfind("error: ", 0) == 0 &&
        l.find("timed out after 3 s on device " + std::to_string(device)) != std::string::npos)
      return true;
  return false;
}

class MpiRunStalledRank : public ::testing::TestWithParam<int> {};

// A process that stops must not hang the others: they give up at --collective-timeout with a
// one-line error, exit non-zero, and mpirun ends the job.
TEST_P(MpiRunStalledRank, EndsTheRunWithATimeout) {
  int stopped = GetParam(), other = 1 - stopped;
  std::string dir = test::makeTempDir(fmt::format("mpi-stall{}", stopped));
  std::string fx = test::sourcePath("tests/fixtures/parallel_map");
  // A run far longer than the test, so that the stop finds it running.
  StalledJob job =
      stallOneRank({"run", fx + "/model.vit", "--weights", "random:0", "--input", fx + "/input.npy",
                    "--output", dir + "/out.npy", "--repeat", "10000000"},
                   stopped, dir);
  ASSERT_TRUE(job.started) << "the ranks never got going: " << job.err;
  ASSERT_TRUE(job.ended) << "mpirun still running 45 s after rank " << stopped
                         << " stopped: " << job.err;
  EXPECT_FALSE(WIFEXITED(job.status) && WEXITSTATUS(job.status) == 0) << job.err;
  EXPECT_GT(job.seconds, 2.5) << "ended before the timeout: " << job.err;
  EXPECT_TRUE(namesTheTimeout(job.err, other)) << job.err;
  EXPECT_FALSE(fs::exists(dir + "/out.npy"));
}

// The same in a training run that writes a checkpoint every step: the job ends at the timeout,
// and the last checkpoint written is whole (written atomically, it is the old one or the new).
TEST(MpiTrainStalledRank, EndsTheRunAndKeepsTheLastCheckpoint) {
  std::string dir = test::makeTempDir("mpi-train-stall");
  std::string fx = test::sourcePath("tests/fixtures/parallel_map");
  std::string ckpt = dir + "/run.ckpt.safetensors";
  StalledJob job = stallOneRank({"train", fx + "/model.vit", "--data", fx + "/train.npz", "--batch",
                                 "2", "--steps", "10000000", "--checkpoint-every", "1",
                                 "--checkpoint", ckpt, "-o", dir + "/out.safetensors"},
                                1, dir, [&] { return fs::exists(ckpt); });
  ASSERT_TRUE(job.started) << "the ranks never got going: " << job.err;
  ASSERT_TRUE(job.ended) << "mpirun still running 45 s after rank 1 stopped: " << job.err;
  EXPECT_FALSE(WIFEXITED(job.status) && WEXITSTATUS(job.status) == 0) << job.err;
  EXPECT_TRUE(namesTheTimeout(job.err, 0)) << job.err;
  EXPECT_FALSE(fs::exists(dir + "/out.safetensors"));
  // The checkpoint resumes: every tensor of the step is in it, whole.
  auto resumed =
      test::runCommand({VITC_BINARY, "train", fx + "/model.vit", "--data", fx + "/train.npz",
                        "--batch", "2", "--resume", ckpt, "--steps", "0", "-o",
                        dir + "/resumed.safetensors", "--backend=interpreter"},
                       {}, 120);
  EXPECT_EQ(resumed.exit, 0) << resumed.err;
}

INSTANTIATE_TEST_SUITE_P(All, MpiRunStalledRank, ::testing::Values(0, 1),
                         [](const auto &info) { return fmt::format("rank{}", info.param); });

} // namespace
} // namespace vitc
