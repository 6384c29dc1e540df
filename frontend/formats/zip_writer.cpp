// The zip writer: local headers, stored data, central directory, end records (PKWARE APPNOTE).
#include "frontend/formats/zip_writer.h"

#include <algorithm>

#include <zlib.h>

namespace vitc::formats {
namespace {

constexpr uint32_t kLocalHeader = 0x04034b50;
constexpr uint32_t kCentralHeader = 0x02014b50;
constexpr uint32_t kEndOfCentralDirectory = 0x06054b50;
constexpr uint32_t kZip64EndOfCentralDirectory = 0x06064b50;
constexpr uint32_t kZip64Locator = 0x07064b50;
constexpr uint16_t kZip64ExtraId = 0x0001;
constexpr uint32_t kMax32 = 0xffffffff; // also the "see the zip64 field" marker
constexpr uint16_t kMax16 = 0xffff;

constexpr uint16_t kDeflated = 8;      // compression method
constexpr uint16_t kVersion = 20;      // stored and deflated members
constexpr uint16_t kVersionZip64 = 45; // zip64 extensions
constexpr uint16_t kMadeByUnix = 3 << 8;
constexpr uint16_t kUtf8Names = 1 << 11;
constexpr uint16_t kDosDate1980 = (1 << 5) | 1; // 1980-01-01; time 00:00 is 0
constexpr uint32_t kRegularFile0644 = 0100644u << 16;

void put16(std::string &out, uint16_t v) {
  out += static_cast<char>(v & 0xff);
  out += static_cast<char>(v >> 8);
}
void put32(std::string &out, uint32_t v) {
  put16(out, static_cast<uint16_t>(v & 0xffff));
  put16(out, static_cast<uint16_t>(v >> 16));
}
void put64(std::string &out, uint64_t v) {
  put32(out, static_cast<uint32_t>(v & kMax32));
  put32(out, static_cast<uint32_t>(v >> 32));
}
uint32_t clamp32(uint64_t v, bool marker) { return marker ? kMax32 : static_cast<uint32_t>(v); }

bool isAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// The raw deflate stream (no zlib header, as zip members hold it) of the concatenated `parts`.
std::string deflateParts(const std::vector<std::string_view> &parts) {
  z_stream z{};
  deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out;
  char buffer[1 << 16];
  auto drain = [&](int flush) {
    do {
      z.next_out = reinterpret_cast<Bytef *>(buffer);
      z.avail_out = sizeof buffer;
      deflate(&z, flush);
      out.append(buffer, sizeof buffer - z.avail_out);
    } while (z.avail_out == 0);
  };
  for (std::string_view p : parts) {
    // zlib counts input in 32-bit units: feed a large part in pieces.
    for (size_t at = 0; at < p.size();) {
      size_t piece = std::min<size_t>(p.size() - at, size_t(1) << 30);
      z.next_in = reinterpret_cast<Bytef *>(const_cast<char *>(p.data() + at));
      z.avail_in = static_cast<uInt>(piece);
      drain(Z_NO_FLUSH);
      at += piece;
    }
  }
  z.avail_in = 0;
  drain(Z_FINISH);
  deflateEnd(&z);
  return out;
}

uint32_t crcOf(const std::vector<std::string_view> &parts) {
  uLong crc = crc32_z(0, nullptr, 0);
  for (std::string_view p : parts)
    crc = crc32_z(crc, reinterpret_cast<const Bytef *>(p.data()), p.size());
  return static_cast<uint32_t>(crc);
}

} // namespace

Expected<ZipWriter> ZipWriter::create(const std::string &path, Options options) {
  ZipWriter w;
  w.path_ = path;
  w.options_ = options;
  VITC_ASSIGN(w.out_, AtomicFile::create(path));
  return w;
}

Status ZipWriter::write(const std::string &bytes) {
  Status s = out_->write(bytes);
  if (!s)
    failed_ = true;
  offset_ += bytes.size();
  return s;
}

Status ZipWriter::add(const std::string &name, const std::vector<std::string_view> &parts) {
  if (name.empty() || name.size() > kMax16)
    return makeError(Loc::inFile(path_), "zip member name '{}' must be 1 to {} bytes long", name,
                     kMax16);
  if (failed_)
    return makeError(Loc::inFile(path_), "cannot add member '{}' after a failed write", name);
  Member m;
  m.name = name;
  m.offset = offset_;
  m.crc = crcOf(parts);
  for (std::string_view p : parts)
    m.size += p.size();
  std::string compressed;
  std::vector<std::string_view> data = parts;
  if (options_.deflate) {
    compressed = deflateParts(parts);
    data = {compressed};
  }
  m.compressedSize = options_.deflate ? compressed.size() : m.size;

  bool zip64 = options_.forceZip64 || m.size >= kMax32 || m.compressedSize >= kMax32;
  std::string h;
  put32(h, kLocalHeader);
  put16(h, zip64 ? kVersionZip64 : kVersion);
  put16(h, isAscii(name) ? 0 : kUtf8Names);
  put16(h, options_.deflate ? kDeflated : 0);
  put16(h, 0);
  put16(h, kDosDate1980);
  put32(h, m.crc);
  put32(h, clamp32(m.compressedSize, zip64));
  put32(h, clamp32(m.size, zip64)); // uncompressed size
  put16(h, static_cast<uint16_t>(name.size()));
  put16(h, zip64 ? 20 : 0);
  h += name;
  if (zip64) {
    put16(h, kZip64ExtraId);
    put16(h, 16);
    put64(h, m.size); // uncompressed first, then compressed
    put64(h, m.compressedSize);
  }
  VITC_TRY(write(h));
  for (std::string_view p : data) {
    Status s = out_->write(p.data(), p.size());
    if (!s) {
      failed_ = true;
      return s;
    }
    offset_ += p.size();
  }
  members_.push_back(std::move(m));
  return Status::ok();
}

std::string ZipWriter::centralHeader(const Member &m) const {
  // The zip64 extra field holds exactly the values whose 32-bit fields are markers, in order.
  bool bigSize = options_.forceZip64 || m.size >= kMax32 || m.compressedSize >= kMax32;
  bool bigOffset = options_.forceZip64 || m.offset >= kMax32;
  std::string extra;
  if (bigSize || bigOffset) {
    put16(extra, kZip64ExtraId);
    put16(extra, static_cast<uint16_t>((bigSize ? 16 : 0) + (bigOffset ? 8 : 0)));
    if (bigSize) {
      put64(extra, m.size);
      put64(extra, m.compressedSize);
    }
    if (bigOffset)
      put64(extra, m.offset);
  }
  uint16_t version = extra.empty() ? kVersion : kVersionZip64;
  std::string h;
  put32(h, kCentralHeader);
  put16(h, kMadeByUnix | version);
  put16(h, version);
  put16(h, isAscii(m.name) ? 0 : kUtf8Names);
  put16(h, options_.deflate ? kDeflated : 0);
  put16(h, 0);
  put16(h, kDosDate1980);
  put32(h, m.crc);
  put32(h, clamp32(m.compressedSize, bigSize));
  put32(h, clamp32(m.size, bigSize));
  put16(h, static_cast<uint16_t>(m.name.size()));
  put16(h, static_cast<uint16_t>(extra.size()));
  put16(h, 0); // comment
  put16(h, 0); // disk
  put16(h, 0); // internal attributes
  put32(h, kRegularFile0644);
  put32(h, clamp32(m.offset, bigOffset));
  return h + m.name + extra;
}

Status ZipWriter::commit() {
  if (failed_)
    return makeError(Loc::inFile(path_), "cannot finish the archive after a failed write");
  uint64_t directoryStart = offset_;
  for (const Member &m : members_)
    VITC_TRY(write(centralHeader(m)));
  uint64_t directorySize = offset_ - directoryStart;
  uint64_t count = members_.size();

  bool manyMembers = options_.forceZip64 || count >= kMax16;
  bool bigSize = options_.forceZip64 || directorySize >= kMax32;
  bool bigStart = options_.forceZip64 || directoryStart >= kMax32;
  std::string end;
  if (manyMembers || bigSize || bigStart) {
    uint64_t recordOffset = offset_;
    put32(end, kZip64EndOfCentralDirectory);
    put64(end, 44); // the record's size, not counting these first 12 bytes
    put16(end, kMadeByUnix | kVersionZip64);
    put16(end, kVersionZip64);
    put32(end, 0); // this disk
    put32(end, 0); // the directory's disk
    put64(end, count);
    put64(end, count);
    put64(end, directorySize);
    put64(end, directoryStart);
    put32(end, kZip64Locator);
    put32(end, 0);
    put64(end, recordOffset);
    put32(end, 1); // disks in all
  }
  put32(end, kEndOfCentralDirectory);
  put16(end, 0);
  put16(end, 0);
  uint16_t shortCount = manyMembers ? kMax16 : static_cast<uint16_t>(count);
  put16(end, shortCount);
  put16(end, shortCount);
  put32(end, clamp32(directorySize, bigSize));
  put32(end, clamp32(directoryStart, bigStart));
  put16(end, 0); // comment
  VITC_TRY(write(end));
  return out_->commit();
}

} // namespace vitc::formats
