// .npz data sets: `images` and `labels`, and optionally `test_images` and `test_labels`.
//
// Images are float32 N×C×H×W (taken as given), or uint8 N×H×W (one channel) or N×H×W×C (as numpy,
// PIL and TensorFlow hold them, transposed here to NCHW), scaled to [0, 1]. Labels are a vector of
// integers of any width (or floats holding integers, as a careless np.array makes them), read
// exactly and checked to be non-negative and to fit 32 bits.
#include <cmath>

#include "frontend/formats/convert.h"
#include "frontend/formats/npz.h"
#include "train/loaders.h"

namespace vitc::train {
namespace {

using formats::ElementKind;
using formats::ElementType;
using formats::NpzFile;
using formats::StoredArray;

std::string memberName(const std::string &array) { return array + ".npy"; }

bool isFloat32(const ElementType &t) { return t.kind == ElementKind::Float && t.bytes == 4; }
bool isUint8(const ElementType &t) { return t.kind == ElementKind::UnsignedInt && t.bytes == 1; }

// Decodes the stored images into d.images (NCHW, [0, 1]) and sets the sizes.
Status decodeImages(const StoredArray &stored, const Loc &loc, Dataset &d) {
  const formats::NpyDeclaration &decl = stored.declaration;
  const Shape &shape = decl.shape;
  bool float32 = isFloat32(decl.type), uint8 = isUint8(decl.type);
  if (!float32 && !uint8)
    return makeError(loc,
                     "images of dtype '{}' are not supported; vitc reads float32 N×C×H×W images, "
                     "or uint8 N×H×W or N×H×W×C images",
                     decl.descr);
  if (float32 && shape.size() != 4)
    return makeError(loc, "float32 images have shape {}; they must be N×C×H×W", shapeString(shape));
  if (uint8 && shape.size() != 3 && shape.size() != 4)
    return makeError(loc, "uint8 images have shape {}; they must be N×H×W or N×H×W×C",
                     shapeString(shape));
  if (decl.fortranOrder)
    return makeError(loc, "the images are stored in Fortran order; save them in C order "
                          "(numpy.ascontiguousarray)");
  for (size_t i = 1; i < shape.size(); ++i)
    if (shape[i] == 0)
      return makeError(loc, "images of shape {} have no pixels", shapeString(shape));
  d.count = shape[0];
  if (float32) {
    d.channels = shape[1], d.height = shape[2], d.width = shape[3];
  } else {
    d.height = shape[1], d.width = shape[2], d.channels = shape.size() == 4 ? shape[3] : 1;
  }
  VITC_TRY(allocateImages(d, loc));
  size_t numel = d.images.size();
  if (float32) {
    formats::convertToFloat(decl.type, stored.data.data(), numel, d.images.data());
    for (size_t i = 0; i < numel; ++i)
      if (!std::isfinite(d.images[i]))
        return makeError(loc, "image {} holds {} at element {}", i / d.imageSize(), d.images[i],
                         i % d.imageSize());
    return Status::ok();
  }
  // uint8: N×H×W×C to N×C×H×W (a copy when C is 1), scaled to [0, 1].
  auto channels = static_cast<size_t>(d.channels);
  auto plane = static_cast<size_t>(d.height * d.width);
  const uint8_t *in = stored.data.data();
  float *out = d.images.data();
  for (int64_t n = 0; n < d.count; ++n, in += plane * channels, out += plane * channels)
    for (size_t p = 0; p < plane; ++p)
      for (size_t c = 0; c < channels; ++c)
        out[c * plane + p] = scaledPixel(in[p * channels + c]);
  return Status::ok();
}

// Decodes the stored labels into d.labels, exactly.
Status decodeLabels(const StoredArray &stored, const Loc &loc, Dataset &d) {
  const formats::NpyDeclaration &decl = stored.declaration;
  if (decl.shape.size() != 1)
    return makeError(loc, "labels have shape {}; they must be a vector of one label per image",
                     shapeString(decl.shape));
  auto count = static_cast<size_t>(decl.shape[0]);
  std::vector<int64_t> values(count);
  if (decl.type.kind == ElementKind::Float) {
    std::vector<float> floats(count);
    formats::convertToFloat(decl.type, stored.data.data(), count, floats.data());
    for (size_t i = 0; i < count; ++i) {
      // Compared as floats: every float beyond int64_t's range is an integer, so the range check
      // below refuses it before any conversion could overflow.
      if (floats[i] != std::floor(floats[i]) || std::abs(floats[i]) > 0x1p62f)
        return makeError(loc, "label {} of image {} is not an integer class index", floats[i], i);
      values[i] = static_cast<int64_t>(floats[i]);
    }
  } else if (decl.type.kind == ElementKind::SignedInt ||
             decl.type.kind == ElementKind::UnsignedInt) {
    formats::convertToInt64(decl.type, stored.data.data(), count, values.data());
  } else {
    return makeError(loc, "labels of dtype '{}' are not supported; they must be integers",
                     decl.descr);
  }
  d.labels.resize(count);
  for (size_t i = 0; i < count; ++i) {
    if (values[i] < 0)
      return makeError(loc, "label {} of image {} is negative", values[i], i);
    if (values[i] > INT32_MAX)
      return makeError(loc, "label {} of image {} is too large for a class index", values[i], i);
    d.labels[i] = static_cast<int32_t>(values[i]);
  }
  return Status::ok();
}

// One split from the arrays `imagesName` and `labelsName`, named `source` in messages.
Expected<Dataset> loadSplit(const NpzFile &npz, const std::string &imagesName,
                            const std::string &labelsName, std::string source) {
  Dataset d;
  d.source = std::move(source);
  {
    VITC_ASSIGN(StoredArray images, npz.loadStored(imagesName));
    VITC_TRY(decodeImages(images, Loc::inFile(npz.path() + ":" + memberName(imagesName)), d));
  } // The stored bytes go before the labels come.
  VITC_ASSIGN(StoredArray labels, npz.loadStored(labelsName));
  Loc labelsLoc = Loc::inFile(npz.path() + ":" + memberName(labelsName));
  if (labels.declaration.shape.size() == 1)
    VITC_TRY(checkImagesAndLabels(Loc::inFile(npz.path()), d.count, "'" + imagesName + "'",
                                  labels.declaration.shape[0], "'" + labelsName + "'"));
  VITC_TRY(decodeLabels(labels, labelsLoc, d));
  return d;
}

} // namespace

Expected<DataSplits> loadNpzDataset(const std::string &path) {
  VITC_ASSIGN(NpzFile npz, NpzFile::open(path));
  DataSplits splits;
  VITC_ASSIGN(splits.train, loadSplit(npz, "images", "labels", path));
  bool testImages = npz.contains("test_images"), testLabels = npz.contains("test_labels");
  if (!testImages && !testLabels)
    return splits;
  if (!testImages || !testLabels)
    return makeError(Loc::inFile(path), "the archive has '{}' but no '{}': a test split needs both",
                     testImages ? "test_images" : "test_labels",
                     testImages ? "test_labels" : "test_images");
  VITC_ASSIGN(splits.test,
              loadSplit(npz, "test_images", "test_labels", path + ":" + memberName("test_images")));
  return splits;
}

} // namespace vitc::train
