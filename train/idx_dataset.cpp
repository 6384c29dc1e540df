// MNIST-format IDX files: a big-endian header (magic, then one 32-bit size per dimension) and
// unsigned bytes, optionally gzip-compressed, in a folder as the MNIST and Fashion-MNIST
// distributions lay them out.
#include <algorithm>
#include <filesystem>
#include <vector>

#include "train/byte_source.h"
#include "train/loaders.h"

namespace vitc::train {
namespace {

// The magic number of an IDX file of unsigned bytes in `rank` dimensions: 0x00000803 for images,
// 0x00000801 for labels.
constexpr uint32_t idxMagic(int rank) { return 0x0800u | static_cast<uint32_t>(rank); }

constexpr int kImageRank = 3; // count x height x width
constexpr int kLabelRank = 1; // count

std::string dimsString(const std::vector<int64_t> &dims) {
  std::string s;
  for (int64_t d : dims)
    s += (s.empty() ? "" : "x") + std::to_string(d);
  return s;
}

std::string_view contentsOf(int rank) { return rank == kImageRank ? "images" : "labels"; }

// An IDX file whose header has been read and checked against the size of the data after it.
struct IdxFile {
  ByteSource source;
  std::vector<int64_t> dims;
  uint64_t bytes = 0; // of data after the header

  // Passes the data to `consume(offset, bytes, n)` in parts, in order, so that it is never held
  // whole as bytes, and checks that it ends where the header says.
  template <typename Consume> Status readData(Consume consume) {
    Loc loc = Loc::inFile(source.path());
    constexpr size_t kPart = size_t(1) << 16;
    uint8_t part[kPart];
    for (uint64_t done = 0; done < bytes;) {
      VITC_ASSIGN(size_t got, source.read(part, std::min<uint64_t>(kPart, bytes - done)));
      if (got == 0)
        return makeError(loc,
                         "the data ends after {} of the {} bytes that the header's sizes {} need",
                         done, bytes, dimsString(dims));
      consume(done, part, got);
      done += got;
    }
    VITC_ASSIGN(size_t extra, source.read(part, 1));
    if (extra != 0)
      return makeError(loc, "the data holds more than the {} bytes that the header's sizes {} need",
                       bytes, dimsString(dims));
    return Status::ok();
  }
};

// Opens the IDX file `path` of unsigned bytes in `rank` dimensions and reads its header, checking
// that the data can hold what the header's sizes say before anything is allocated for it.
Expected<IdxFile> openIdx(const std::string &path, int rank) {
  Loc loc = Loc::inFile(path);
  VITC_ASSIGN(ByteSource source, ByteSource::open(path));
  uint8_t header[4 + 4 * kImageRank];
  size_t headerBytes = 4 + 4 * static_cast<size_t>(rank);
  VITC_ASSIGN(size_t got, source.read(header, headerBytes));
  auto bigEndian32 = [&header](size_t at) {
    return uint32_t(header[at]) << 24 | uint32_t(header[at + 1]) << 16 |
           uint32_t(header[at + 2]) << 8 | uint32_t(header[at + 3]);
  };
  if (got < 4)
    return makeError(loc, "the data is {} bytes, too short for an IDX header", got);
  uint32_t magic = bigEndian32(0);
  if (magic != idxMagic(rank)) {
    int otherRank = rank == kImageRank ? kLabelRank : kImageRank;
    std::string hint = magic == idxMagic(otherRank)
                           ? fmt::format(" (this is a file of {})", contentsOf(otherRank))
                           : "";
    return makeError(loc,
                     "not an IDX file of {}: it starts with 0x{:08x}, not 0x{:08x} (unsigned bytes "
                     "in {} dimensions){}",
                     contentsOf(rank), magic, idxMagic(rank), rank, hint);
  }
  if (got < headerBytes)
    return makeError(loc, "the data ends inside the IDX header, after {} of its {} bytes", got,
                     headerBytes);

  IdxFile file{std::move(source), {}, 1};
  for (int d = 0; d < rank; ++d) {
    file.dims.push_back(bigEndian32(4 + 4 * static_cast<size_t>(d)));
    // Three 32-bit sizes can overflow 64 bits; the checks below refuse any that large anyway.
    if (__builtin_mul_overflow(file.bytes, static_cast<uint64_t>(file.dims.back()), &file.bytes))
      file.bytes = UINT64_MAX;
  }
  uint64_t most = file.source.mostRemaining();
  if (!file.source.compressed() && file.bytes != most)
    return makeError(loc,
                     "the header's sizes {} need {} bytes after the header, but the file holds {}",
                     dimsString(file.dims), file.bytes, most);
  if (file.bytes > most)
    return makeError(loc,
                     "the header's sizes {} need {} bytes, more than a gzip file of {} bytes can "
                     "inflate to",
                     dimsString(file.dims), file.bytes, file.source.storedSize());
  return file;
}

// One split: images from `imagesPath` and labels from `labelsPath` in the folder `dir`, named
// `source` in messages.
Expected<Dataset> loadSplit(const std::string &dir, const std::string &imagesPath,
                            const std::string &labelsPath, std::string source) {
  VITC_ASSIGN(IdxFile images, openIdx(imagesPath, kImageRank));
  VITC_ASSIGN(IdxFile labels, openIdx(labelsPath, kLabelRank));
  auto fileName = [](const std::string &path) {
    return std::filesystem::path(path).filename().string();
  };
  VITC_TRY(checkImagesAndLabels(Loc::inFile(dir), images.dims[0], fileName(imagesPath),
                                labels.dims[0], fileName(labelsPath)));
  if (images.dims[1] == 0 || images.dims[2] == 0)
    return makeError(Loc::inFile(imagesPath), "the images are {}x{} pixels: they have none",
                     images.dims[1], images.dims[2]);
  Dataset d;
  d.source = std::move(source);
  d.count = images.dims[0];
  d.channels = 1;
  d.height = images.dims[1];
  d.width = images.dims[2];
  VITC_TRY(allocateImages(d, Loc::inFile(imagesPath)));
  float *pixels = d.images.data();
  VITC_TRY(images.readData([pixels](uint64_t at, const uint8_t *bytes, size_t n) {
    for (size_t i = 0; i < n; ++i)
      pixels[at + i] = scaledPixel(bytes[i]);
  }));
  d.labels.resize(static_cast<size_t>(d.count));
  int32_t *out = d.labels.data();
  VITC_TRY(labels.readData([out](uint64_t at, const uint8_t *bytes, size_t n) {
    std::copy(bytes, bytes + n, out + at);
  }));
  return d;
}

// `dir/name`, or `dir/name.gz`, whichever is a file; empty when neither is.
std::string findIdx(const std::string &dir, const std::string &name) {
  for (const std::string &candidate : {name, name + ".gz"}) {
    std::error_code error;
    std::string path = (std::filesystem::path(dir) / candidate).string();
    if (std::filesystem::is_regular_file(path, error))
      return path;
  }
  return "";
}

} // namespace

Expected<DataSplits> loadIdxFolder(const std::string &dir) {
  Loc loc = Loc::inFile(dir);
  const std::string trainImages = "train-images-idx3-ubyte",
                    trainLabels = "train-labels-idx1-ubyte";
  const std::string testImages = "t10k-images-idx3-ubyte", testLabels = "t10k-labels-idx1-ubyte";
  std::string trainImagesPath = findIdx(dir, trainImages);
  std::string trainLabelsPath = findIdx(dir, trainLabels);
  for (const auto &[path, name] :
       {std::pair{trainImagesPath, trainImages}, std::pair{trainLabelsPath, trainLabels}})
    if (path.empty())
      return makeError(loc,
                       "no {0} or {0}.gz in this folder; an MNIST-format data set holds "
                       "{1}[.gz] and {2}[.gz], and t10k-* files for a test split",
                       name, trainImages, trainLabels);
  DataSplits splits;
  VITC_ASSIGN(splits.train, loadSplit(dir, trainImagesPath, trainLabelsPath, dir));

  std::string testImagesPath = findIdx(dir, testImages);
  std::string testLabelsPath = findIdx(dir, testLabels);
  if (testImagesPath.empty() && testLabelsPath.empty())
    return splits;
  if (testImagesPath.empty() || testLabelsPath.empty())
    return makeError(Loc::inFile(testImagesPath.empty() ? testLabelsPath : testImagesPath),
                     "the test split needs {}[.gz] beside this file",
                     testImagesPath.empty() ? testImages : testLabels);
  VITC_ASSIGN(splits.test, loadSplit(dir, testImagesPath, testLabelsPath, testImagesPath));
  return splits;
}

} // namespace vitc::train
