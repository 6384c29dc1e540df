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

struct NpzFile::Member {
  std::unique_lock<std::mutex> lock; // a zip_t is not safe to read from two threads at once
  zip_file_t *file = nullptr;
  size_t size = 0;   // uncompressed, as the archive states it
  std::string name;  // `name.npy`
  std::string where; // `archive.npz:name.npy`, for the .npy parser's messages
  ~Member() {
    if (file)
      zip_fclose(file);
  }

  // Reads the next `n` bytes into `out`. libzip 1.7's inflater gives zlib at most 4 GiB - 1 of a
  // read but reports the whole request as done, so reads are made in parts well below that.
  Status read(uint8_t *out, size_t n, const Loc &loc) {
    constexpr size_t kPart = size_t(1) << 30;
    size_t done = 0;
    while (done < n) {
      zip_int64_t got = zip_fread(file, out + done, std::min(n - done, kPart));
      if (got < 0)
        return makeError(loc, "member '{}': {}", name, lowerFirst(zip_file_strerror(file)));
      if (got == 0)
        return makeError(loc, "member '{}' ends after {} of its {} bytes", name, done, n);
      done += static_cast<size_t>(got);
    }
    return Status::ok();
  }
};

Expected<std::unique_ptr<NpzFile::Member>> NpzFile::openMember(std::string_view name) const {
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
  auto m = std::make_unique<Member>();
  m->name = fmt::format("{}{}", name, kSuffix);
  m->where = fmt::format("{}:{}", path_, m->name);
  const std::string &member = m->name;

  m->lock = std::unique_lock<std::mutex>(archive_->mutex);
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

  m->file = zip_fopen_index(zip, index, 0);
  if (!m->file)
    return makeError(loc, "member '{}': {}", member, lowerFirst(zip_strerror(zip)));
  m->size = static_cast<size_t>(st.size);
  return m;
}

namespace {

// The .npy header at the start of member `m`, inflating nothing past it. `bytes` gets the bytes
// read so far, header and all.
Expected<NpyDeclaration> readNpyHeader(NpzFile::Member &m, std::string &bytes, const Loc &loc) {
  // The fixed part first (magic, version, header length), then the header it announces.
  constexpr size_t kFixedPart = 12;
  constexpr size_t kMaxHeader = size_t(1) << 20; // numpy's headers are a few hundred bytes
  bytes.assign(std::min(m.size, kFixedPart), '\0');
  VITC_TRY(m.read(reinterpret_cast<uint8_t *>(bytes.data()), bytes.size(), loc));
  size_t header = npyHeaderBytes(reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size());
  if (header > kMaxHeader)
    return makeError(Loc::inFile(m.where), "the .npy header claims {} bytes, which is implausible",
                     header);
  if (header > bytes.size()) {
    size_t have = bytes.size();
    bytes.resize(std::min(header, m.size));
    VITC_TRY(m.read(reinterpret_cast<uint8_t *>(bytes.data()) + have, bytes.size() - have, loc));
  }
  return parseNpyHeader(reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size(), m.where);
}

// Reads one byte past the member's end, which makes libzip compare the CRC and the stated size.
Status checkMemberEnd(NpzFile::Member &m, const Loc &loc) {
  uint8_t extra;
  zip_int64_t n = zip_fread(m.file, &extra, 1);
  if (n < 0)
    return makeError(loc, "member '{}': {}", m.name, lowerFirst(zip_file_strerror(m.file)));
  if (n > 0)
    return makeError(loc, "member '{}' holds more than its stated {} bytes", m.name, m.size);
  return Status::ok();
}

} // namespace

Expected<Shape> NpzFile::declaredShape(std::string_view name) const {
  Loc loc = Loc::inFile(path_);
  VITC_ASSIGN(std::unique_ptr<Member> m, openMember(name));
  std::string bytes;
  VITC_ASSIGN(NpyDeclaration d, readNpyHeader(*m, bytes, loc));
  return d.shape;
}

Expected<Tensor> NpzFile::load(std::string_view name) const {
  Loc loc = Loc::inFile(path_);
  VITC_ASSIGN(std::unique_ptr<Member> m, openMember(name));
  std::string head;
  VITC_ASSIGN(NpyDeclaration d, readNpyHeader(*m, head, loc));
  try {
    // Little-endian float32 in C order, the common case, is inflated straight into the tensor:
    // one copy of a large array in memory, not two.
    bool cOrder = !d.fortranOrder || d.shape.size() <= 1;
    if (d.descr == "<f4" && cOrder && d.headerBytes + d.dataBytes == m->size) {
      Tensor t = Tensor::zeros(d.shape);
      VITC_TRY(m->read(reinterpret_cast<uint8_t *>(t.mutableData()), d.dataBytes, loc));
      VITC_TRY(checkMemberEnd(*m, loc));
      return t;
    }
    // Anything else is inflated whole and converted; its size is bounded by the stated size,
    // and the .npy parser says what is wrong with a member whose data does not fit its shape.
    size_t size = m->size;
    auto bytes = std::make_unique_for_overwrite<uint8_t[]>(size > 0 ? size : 1);
    std::copy(head.begin(), head.end(), bytes.get());
    VITC_TRY(m->read(bytes.get() + head.size(), size - head.size(), loc));
    VITC_TRY(checkMemberEnd(*m, loc));
    return parseNpy(bytes.get(), size, m->where);
  } catch (const std::bad_alloc &) {
    return makeError(loc, "member '{}' needs {} bytes, more memory than vitc could allocate",
                     m->name, m->size);
  }
}

Expected<StoredArray> NpzFile::loadStored(std::string_view name) const {
  Loc loc = Loc::inFile(path_);
  VITC_ASSIGN(std::unique_ptr<Member> m, openMember(name));
  StoredArray array;
  std::string head;
  VITC_ASSIGN(array.declaration, readNpyHeader(*m, head, loc));
  const NpyDeclaration &d = array.declaration;
  if (d.headerBytes + d.dataBytes != m->size)
    return makeError(
        Loc::inFile(m->where),
        "data of shape {} of '{}' needs {} bytes, the member holds {} after its header",
        shapeString(d.shape), d.descr, d.dataBytes, m->size - d.headerBytes);
  try {
    array.data.resize(d.dataBytes);
  } catch (const std::bad_alloc &) {
    return makeError(loc, "member '{}' needs {} bytes, more memory than vitc could allocate",
                     m->name, m->size);
  }
  VITC_TRY(m->read(array.data.data(), array.data.size(), loc));
  VITC_TRY(checkMemberEnd(*m, loc));
  return array;
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
