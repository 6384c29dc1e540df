// .npz: listing and reading members with libzip, and writing through ZipWriter.
#include "frontend/formats/npz.h"

#include <algorithm>
#include <cctype>
#include <mutex>
#include <set>

#include <zip.h>

#include "frontend/formats/npy.h"
#include "frontend/formats/zip_writer.h"
#include "support/files.h"

namespace vitc::formats {
namespace {

constexpr std::string_view kSuffix = ".npy";
// No ViT weight comes near this; a member claiming more is corrupt or hostile.
constexpr uint64_t kMaxMemberBytes = uint64_t(64) << 30;
// Deflate cannot expand by more than about 1032:1 (a 258-byte match per 2 bits at best).
constexpr uint64_t kMaxDeflateRatio = 1032;
constexpr uint64_t kMinZipBytes = 22; // an end-of-central-directory record alone

// libzip's messages start with a capital letter ("Not a zip archive"); vitc's do not, unless the
// first word is an acronym ("CRC error").
std::string lowerFirst(const char *message) {
  std::string s = message ? message : "unknown libzip error";
  auto upper = [&s](size_t i) {
    return i < s.size() && std::isupper(static_cast<unsigned char>(s[i]));
  };
  if (upper(0) && !upper(1))
    s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  return s;
}

} // namespace

struct NpzFile::Archive {
  std::shared_ptr<MappedFile> file;
  zip_t *zip = nullptr;
  std::mutex mutex; // a zip_t is not safe to read from two threads at once
  ~Archive() {
    if (zip)
      zip_discard(zip);
  }
};

Expected<NpzFile> NpzFile::open(const std::string &path) {
  Loc loc = Loc::inFile(path);
  VITC_ASSIGN(auto file, MappedFile::open(path));
  // libzip takes an empty file for an empty archive; numpy and vitc do not.
  if (file->size() < kMinZipBytes)
    return makeError(loc, "file is {} bytes, too short to be a zip archive", file->size());

  auto archive = std::make_shared<Archive>();
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t *source = zip_source_buffer_create(file->data(), file->size(), 0, &error);
  if (source)
    archive->zip = zip_open_from_source(source, ZIP_RDONLY, &error);
  if (!archive->zip) {
    std::string why = lowerFirst(zip_error_strerror(&error));
    if (source)
      zip_source_free(source);
    zip_error_fini(&error);
    return makeError(loc, "cannot read the zip archive: {}", why);
  }
  zip_error_fini(&error);
  archive->file = std::move(file);

  NpzFile npz;
  npz.path_ = path;
  std::vector<std::pair<std::string, uint64_t>> members;
  // The members' compressed bytes are disjoint parts of the file. Members that claim more in all
  // share their data, and loading each would inflate the same bytes again and again: a zip bomb
  // that needs no nesting (and no member that is implausible on its own).
  uint64_t compressed = 0;
  zip_int64_t count = zip_get_num_entries(archive->zip, 0);
  for (zip_int64_t i = 0; i < count; ++i) {
    const char *raw = zip_get_name(archive->zip, static_cast<zip_uint64_t>(i), ZIP_FL_ENC_RAW);
    if (!raw)
      return makeError(loc, "cannot read the name of zip member {}: {}", i,
                       lowerFirst(zip_strerror(archive->zip)));
    std::string_view name = raw;
    if (!name.ends_with(kSuffix))
      continue;
    name.remove_suffix(kSuffix.size());
    members.emplace_back(std::string(name), static_cast<uint64_t>(i));
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(archive->zip, static_cast<zip_uint64_t>(i), 0, &st) == 0 &&
        (st.valid & ZIP_STAT_COMP_SIZE) &&
        __builtin_add_overflow(compressed, st.comp_size, &compressed))
      compressed = UINT64_MAX;
  }
  if (compressed > archive->file->size())
    return makeError(loc,
                     "the .npy members claim {} compressed bytes in all, more than the file's {}",
                     compressed, archive->file->size());
  std::sort(members.begin(), members.end());
  for (size_t i = 0; i < members.size(); ++i) {
    if (i > 0 && members[i].first == members[i - 1].first)
      return makeError(loc, "member '{}{}' appears twice in the archive", members[i].first,
                       kSuffix);
    npz.names_.push_back(members[i].first);
    npz.indices_.push_back(members[i].second);
  }
  npz.archive_ = std::move(archive);
  return npz;
}

bool NpzFile::contains(std::string_view name) const {
  return std::binary_search(names_.begin(), names_.end(), name);
}

Expected<Tensor> NpzFile::load(std::string_view name) const {
  Loc loc = Loc::inFile(path_);
  auto it = std::lower_bound(names_.begin(), names_.end(), name);
  if (it == names_.end() || *it != name) {
    std::string known;
    for (size_t i = 0; i < names_.size() && i < 8; ++i)
      known += (i ? ", " : "") + names_[i];
    if (names_.size() > 8)
      known += fmt::format(", ... ({} in all)", names_.size());
    return makeError(loc, "no array named '{}' (the archive holds: {})", name,
                     names_.empty() ? "no arrays" : known);
  }
  zip_uint64_t index = indices_[static_cast<size_t>(it - names_.begin())];
  std::string member = fmt::format("{}{}", name, kSuffix);
  std::string where = fmt::format("{}:{}", path_, member);

  std::lock_guard<std::mutex> lock(archive_->mutex);
  zip_t *zip = archive_->zip;
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index(zip, index, 0, &st) != 0)
    return makeError(loc, "member '{}': {}", member, lowerFirst(zip_strerror(zip)));
  constexpr zip_uint64_t kNeeded = ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD;
  if ((st.valid & kNeeded) != kNeeded)
    return makeError(loc, "member '{}': the archive does not record its size", member);
  if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE)
    return makeError(loc, "member '{}' is encrypted", member);
  if (st.comp_method != ZIP_CM_STORE && st.comp_method != ZIP_CM_DEFLATE)
    return makeError(loc,
                     "member '{}' uses compression method {}; vitc reads stored and deflated "
                     "members",
                     member, st.comp_method);
  uint64_t fileSize = archive_->file->size();
  if (st.comp_size > fileSize)
    return makeError(loc, "member '{}' claims {} compressed bytes, more than the file's {}", member,
                     st.comp_size, fileSize);
  uint64_t plausible =
      st.comp_method == ZIP_CM_STORE ? st.comp_size : st.comp_size * kMaxDeflateRatio + 1024;
  if (st.size > kMaxMemberBytes || st.size > plausible)
    return makeError(loc,
                     "member '{}' claims {} bytes uncompressed from {} stored bytes, which is "
                     "implausible",
                     member, st.size, st.comp_size);

  zip_file_t *zf = zip_fopen_index(zip, index, 0);
  if (!zf)
    return makeError(loc, "member '{}': {}", member, lowerFirst(zip_strerror(zip)));
  auto closer = std::unique_ptr<zip_file_t, int (*)(zip_file_t *)>(zf, zip_fclose);
  size_t size = static_cast<size_t>(st.size);
  auto bytes = std::make_unique_for_overwrite<uint8_t[]>(size > 0 ? size : 1);
  size_t done = 0;
  while (done < size) {
    zip_int64_t n = zip_fread(zf, bytes.get() + done, size - done);
    if (n < 0)
      return makeError(loc, "member '{}': {}", member, lowerFirst(zip_file_strerror(zf)));
    if (n == 0)
      return makeError(loc, "member '{}' ends after {} of its {} bytes", member, done, size);
    done += static_cast<size_t>(n);
  }
  // Reading past the end makes libzip compare the CRC and the stated size.
  uint8_t extra;
  zip_int64_t n = zip_fread(zf, &extra, 1);
  if (n < 0)
    return makeError(loc, "member '{}': {}", member, lowerFirst(zip_file_strerror(zf)));
  if (n > 0)
    return makeError(loc, "member '{}' holds more than its stated {} bytes", member, size);
  return parseNpy(bytes.get(), size, where);
}

Status writeNpz(const std::string &path,
                const std::vector<std::pair<std::string, Tensor>> &tensors) {
  Loc loc = Loc::inFile(path);
  std::set<std::string_view> names;
  for (const auto &[name, t] : tensors) {
    if (name.empty())
      return makeError(loc, "cannot write an array with an empty name");
    if (!names.insert(name).second)
      return makeError(loc, "array '{}' is given twice", name);
    if (t.empty())
      return makeError(loc, "array '{}' has no data", name);
  }
  VITC_ASSIGN(ZipWriter zip, ZipWriter::create(path));
  for (const auto &[name, t] : tensors) {
    std::string header = npyHeader(t.shape());
    std::string_view data(reinterpret_cast<const char *>(t.data()),
                          static_cast<size_t>(t.numel()) * sizeof(float));
    VITC_TRY(zip.add(name + std::string(kSuffix), {header, data}));
  }
  return zip.commit();
}

} // namespace vitc::formats
