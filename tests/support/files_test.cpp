// Atomic output files: whole or not at all, and devices and FIFOs written in place.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <future>
#include <sys/stat.h>
#include <unistd.h>

#include "support/files.h"
#include "tests/common/subprocess.h"

namespace vitc {
namespace {

bool isFifo(const std::string &path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISFIFO(st.st_mode);
}

TEST(AtomicFile, AnUncommittedFileLeavesNothingAndTheOldTargetStays) {
  std::string path = test::makeTempDir("atomic") + "/out.txt";
  ASSERT_TRUE(writeFileAtomically(path, "old"));
  {
    auto file = AtomicFile::create(path);
    ASSERT_TRUE(file) << file.error().str();
    ASSERT_TRUE((*file)->write("new, but never committed"));
    EXPECT_TRUE(test::fileExists((*file)->tempPath()));
  }
  EXPECT_EQ(test::slurp(path), "old");
  ASSERT_TRUE(writeFileAtomically(path, "new"));
  EXPECT_EQ(test::slurp(path), "new");
}

// Renaming a temporary file over `/dev/null` (as root) or a FIFO would replace it with a file.
TEST(AtomicFile, AFifoIsWrittenInPlaceAndStaysAFifo) {
  std::string path = test::makeTempDir("atomic-fifo") + "/pipe";
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  auto reader = std::async(std::launch::async, [&] { return test::slurp(path); });
  ASSERT_TRUE(writeFileAtomically(path, "through the pipe"));
  EXPECT_EQ(reader.get(), "through the pipe");
  EXPECT_TRUE(isFifo(path));
}

TEST(AtomicFile, DevNullStaysADevice) {
  ASSERT_TRUE(writeFileAtomically("/dev/null", "discarded"));
  struct stat st {};
  ASSERT_EQ(::stat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
}

TEST(AtomicFile, ADirectoryIsNotAnOutput) {
  std::string dir = test::makeTempDir("atomic-dir");
  auto file = AtomicFile::create(dir);
  ASSERT_FALSE(file);
  EXPECT_NE(file.error().str().find("it is a directory"), std::string::npos) << file.error().str();
}

} // namespace
} // namespace vitc
