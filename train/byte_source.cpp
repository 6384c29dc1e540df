// ByteSource: a mapped file, read as stored or through zlib's inflater.
#include "train/byte_source.h"

#include <algorithm>
#include <climits>

#include <zlib.h>

#include "support/files.h"

namespace vitc::train {
namespace {

// Deflate cannot expand by more than about 1032:1 (a 258-byte match per 2 bits at best).
constexpr uint64_t kMaxDeflateRatio = 1032;

bool startsWithGzipMagic(const uint8_t *data, size_t size) {
  return size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
}

} // namespace

struct ByteSource::Inflater {
  z_stream stream{};
  bool memberEnded = false; // the current gzip member is done; more input may start another
  size_t produced = 0;      // inflated bytes given out so far, for messages
  ~Inflater() { inflateEnd(&stream); }
};

ByteSource::ByteSource(ByteSource &&) noexcept = default;
ByteSource &ByteSource::operator=(ByteSource &&) noexcept = default;
ByteSource::~ByteSource() = default;

Expected<ByteSource> ByteSource::open(const std::string &path) {
  ByteSource source;
  source.path_ = path;
  VITC_ASSIGN(source.file_, MappedFile::open(path));
  if (!startsWithGzipMagic(source.file_->data(), source.file_->size()))
    return source;
  source.inflater_ = std::make_unique<Inflater>();
  z_stream &z = source.inflater_->stream;
  // 16 + MAX_WBITS: a gzip wrapper, with the largest window.
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
    return makeError(Loc::inFile(path), "cannot start zlib's inflater: {}",
                     z.msg ? z.msg : "out of memory");
  // zlib takes a non-const pointer but does not write through it.
  z.next_in = const_cast<Bytef *>(source.file_->data());
  z.avail_in = 0; // fed in parts below, since avail_in is 32 bits
  return source;
}

size_t ByteSource::storedSize() const { return file_->size(); }

uint64_t ByteSource::mostRemaining() const {
  if (!inflater_)
    return file_->size() - offset_;
  const z_stream &z = inflater_->stream;
  size_t consumed = static_cast<size_t>(z.next_in - file_->data());
  return (file_->size() - consumed) * kMaxDeflateRatio + 1024;
}

Expected<size_t> ByteSource::read(uint8_t *out, size_t n) {
  if (!inflater_) {
    size_t got = std::min(n, file_->size() - offset_);
    std::copy_n(file_->data() + offset_, got, out);
    offset_ += got;
    return got;
  }
  Inflater &inf = *inflater_;
  z_stream &z = inf.stream;
  const uint8_t *end = file_->data() + file_->size();
  size_t done = 0;
  while (done < n) {
    // Feed the input in parts that fit zlib's 32-bit counters.
    size_t unread = static_cast<size_t>(end - z.next_in) - z.avail_in;
    z.avail_in += static_cast<uInt>(std::min<size_t>(unread, UINT_MAX - z.avail_in));
    if (inf.memberEnded) {
      // Another gzip member may follow, as gunzip reads it; anything else after the end of the
      // data is ignored, as gunzip ignores trailing garbage.
      if (!startsWithGzipMagic(z.next_in, z.avail_in))
        break;
      inflateReset(&z);
      inf.memberEnded = false;
    }
    z.next_out = out + done;
    z.avail_out = static_cast<uInt>(std::min<size_t>(n - done, UINT_MAX));
    uInt before = z.avail_out;
    int status = inflate(&z, Z_NO_FLUSH);
    done += before - z.avail_out;
    if (status == Z_STREAM_END) {
      inf.memberEnded = true;
      continue;
    }
    // No progress with all of the input given: the stream stops before its end.
    if (status == Z_BUF_ERROR && z.next_in == end)
      return makeError(Loc::inFile(path_),
                       "the gzip data is truncated: it ends after {} inflated bytes",
                       inf.produced + done);
    if (status != Z_OK)
      return makeError(Loc::inFile(path_), "cannot inflate the gzip data after {} bytes: {}",
                       inf.produced + done, z.msg ? z.msg : zError(status));
  }
  inf.produced += done;
  return done;
}

} // namespace vitc::train
