// safetensors: round trips, dtype conversion, zero-copy loads, and every malformed header refused.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "frontend/formats/safetensors.h"
#include "tests/frontend/formats/format_test_util.h"

namespace vitc::formats {
namespace {

using namespace testing_util;

// A safetensors image: the 8-byte header length, the header, the data section.
std::string image(const std::string &header, const std::string &data) {
  return le<uint64_t>({header.size()}) + header + data;
}

struct SafetensorsTest : ::testing::Test {
  std::string dir = testDir();
  std::string path = dir + "/model.safetensors";

  // Writes the file and opens it.
  Expected<SafetensorsFile> openImage(const std::string &header, const std::string &data) {
    writeBytes(path, image(header, data));
    return SafetensorsFile::open(path);
  }
  // Opens an image that must be valid and loads `name` from it.
  std::vector<float> loadValues(const std::string &header, const std::string &data,
                                const std::string &name) {
    auto file = openImage(header, data);
    EXPECT_TRUE(file) << file.error().str();
    if (!file)
      return {};
    auto t = file->load(name);
    EXPECT_TRUE(t) << t.error().str();
    return t ? valuesOf(*t) : std::vector<float>{};
  }
};

TEST_F(SafetensorsTest, WrittenTensorsReadBack) {
  Tensor matrix = tensorOf({2, 3}, {1, -2, 3.5f, 0, 1e-30f, -7});
  Tensor scalar = tensorOf({}, {42});
  Tensor empty = Tensor::zeros({0, 3});
  Tensor vector = tensorOf({4}, {9, 8, 7, 6});
  ASSERT_TRUE(writeSafetensors(
      path, {{"z.matrix", matrix}, {"a.scalar", scalar}, {"m.empty", empty}, {"vec", vector}},
      {{"format", "pt"}, {"note", "written by vitc"}}));

  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(file) << file.error().str();
  std::vector<std::string> names;
  for (const auto &e : file->entries())
    names.push_back(e.name);
  EXPECT_EQ(names, (std::vector<std::string>{"a.scalar", "m.empty", "vec", "z.matrix"}));
  EXPECT_EQ(file->metadata(),
            (std::map<std::string, std::string>{{"format", "pt"}, {"note", "written by vitc"}}));

  // Data follows the order given, not the name order.
  ASSERT_NE(file->find("z.matrix"), nullptr);
  EXPECT_EQ(file->find("z.matrix")->begin, 0u);
  EXPECT_EQ(file->find("z.matrix")->end, 24u);
  EXPECT_EQ(file->find("a.scalar")->begin, 24u);
  EXPECT_EQ(file->find("vec")->end, 44u);
  EXPECT_EQ(file->find("z.matrix")->dtype, "F32");
  EXPECT_EQ(file->find("missing"), nullptr);

  for (const auto &[name, want] : std::vector<std::pair<std::string, Tensor>>{
           {"z.matrix", matrix}, {"a.scalar", scalar}, {"m.empty", empty}, {"vec", vector}}) {
    auto t = file->load(name);
    ASSERT_TRUE(t) << t.error().str();
    EXPECT_EQ(t->shape(), want.shape()) << name;
    EXPECT_EQ(valuesOf(*t), valuesOf(want)) << name;
  }
}

TEST_F(SafetensorsTest, HeaderIsPaddedToEightBytesWithSpaces) {
  ASSERT_TRUE(writeSafetensors(path, {{"x", tensorOf({1}, {1})}}));
  std::string bytes = readBytes(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  ASSERT_EQ(bytes.size(), 8 + n + 4);
  std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.front(), '{');
  EXPECT_EQ(header.substr(0, header.find_last_not_of(' ') + 1),
            R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})");
  EXPECT_EQ(header.back(), ' '); // the JSON above is 55 bytes, so padding was needed
}

TEST_F(SafetensorsTest, AlignedF32LoadsWithoutCopyAndOutlivesTheFile) {
  ASSERT_TRUE(writeSafetensors(path, {{"w", tensorOf({2}, {1.5f, 2.5f})}}));
  Tensor first, second;
  {
    auto file = SafetensorsFile::open(path);
    ASSERT_TRUE(file) << file.error().str();
    auto a = file->load("w");
    auto b = file->load("w");
    ASSERT_TRUE(a && b);
    first = *a;
    second = *b;
  }
  // Both views point into the one mapping, which the tensors keep alive.
  EXPECT_EQ(first.data(), second.data());
  EXPECT_EQ(valuesOf(first), (std::vector<float>{1.5f, 2.5f}));
}

TEST_F(SafetensorsTest, UnalignedF32IsCopied) {
  // A 57-byte header puts the data at file offset 65, which is not a multiple of 4.
  std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header.resize(57, ' ');
  ASSERT_EQ((8 + header.size()) % 4, 1u);
  auto file = openImage(header, le<float>({3, -4}));
  ASSERT_TRUE(file) << file.error().str();
  auto a = file->load("w");
  auto b = file->load("w");
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->data(), b->data());
  EXPECT_EQ(valuesOf(*a), (std::vector<float>{3, -4}));
}

TEST_F(SafetensorsTest, Bf16DecodesExactlyIncludingSpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  std::string header = R"({"b":{"dtype":"BF16","shape":[8],"data_offsets":[0,16]}})";
  auto values = loadValues(
      header, le<uint16_t>({0x3f80, 0xc020, 0x7f80, 0xff80, 0x7fc1, 0x0001, 0x8000, 0x4049}), "b");
  ASSERT_EQ(values.size(), 8u);
  EXPECT_EQ(values[0], 1.0f);
  EXPECT_EQ(values[1], -2.5f);
  EXPECT_EQ(values[2], inf);
  EXPECT_EQ(values[3], -inf);
  EXPECT_EQ(std::bit_cast<uint32_t>(values[4]), 0x7fc10000u); // NaN with its payload
  EXPECT_EQ(values[5], std::ldexp(1.0f, -133));               // smallest subnormal
  EXPECT_TRUE(values[6] == 0 && std::signbit(values[6]));
  EXPECT_EQ(values[7], 3.140625f);
}

TEST_F(SafetensorsTest, F16DecodesExactlyIncludingSpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  std::string header = R"({"h":{"dtype":"F16","shape":[2,5],"data_offsets":[0,20]}})";
  auto values = loadValues(header,
                           le<uint16_t>({0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x7c00,
                                         0xfc00, 0x7e00, 0x8000}),
                           "h");
  ASSERT_EQ(values.size(), 10u);
  EXPECT_EQ(values[0], 1.0f);
  EXPECT_EQ(values[1], -2.0f);
  EXPECT_EQ(values[2], 65504.0f);                     // largest half
  EXPECT_EQ(values[3], std::ldexp(1.0f, -24));        // smallest subnormal
  EXPECT_EQ(values[4], 1023 * std::ldexp(1.0f, -24)); // largest subnormal
  EXPECT_EQ(values[5], std::ldexp(1.0f, -14));        // smallest normal
  EXPECT_EQ(values[6], inf);
  EXPECT_EQ(values[7], -inf);
  EXPECT_TRUE(std::isnan(values[8]));
  EXPECT_TRUE(values[9] == 0 && std::signbit(values[9]));
}

TEST_F(SafetensorsTest, WiderAndIntegerDtypesConvertToF32) {
  std::string header = R"({"d":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},)"
                       R"("i":{"dtype":"I64","shape":[3],"data_offsets":[16,40]},)"
                       R"("u":{"dtype":"U8","shape":[2],"data_offsets":[40,42]},)"
                       R"("s":{"dtype":"I8","shape":[2],"data_offsets":[42,44]},)"
                       R"("j":{"dtype":"I32","shape":[1],"data_offsets":[44,48]}})";
  std::string data = le<double>({0.25, -1e10}) + le<int64_t>({0, -5, int64_t(1) << 40}) +
                     le<uint8_t>({255, 7}) + le<int8_t>({-128, 127}) + le<int32_t>({-3});
  EXPECT_EQ(loadValues(header, data, "d"), (std::vector<float>{0.25f, -1e10f}));
  EXPECT_EQ(loadValues(header, data, "i"), (std::vector<float>{0, -5, 1099511627776.0f}));
  EXPECT_EQ(loadValues(header, data, "u"), (std::vector<float>{255, 7}));
  EXPECT_EQ(loadValues(header, data, "s"), (std::vector<float>{-128, 127}));
  EXPECT_EQ(loadValues(header, data, "j"), (std::vector<float>{-3}));
}

TEST_F(SafetensorsTest, UnsupportedDtypesOpenButRefuseToLoad) {
  std::string header = R"({"mask":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]},)"
                       R"("q":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[2,4]},)"
                       R"("ok":{"dtype":"F32","shape":[],"data_offsets":[4,8]}})";
  auto file = openImage(header, le<uint8_t>({1, 0, 0x38, 0x40}) + le<float>({5}));
  ASSERT_TRUE(file) << file.error().str();
  EXPECT_TRUE(failsWith(file->load("mask"), path, "tensor 'mask': dtype BOOL is not supported"));
  EXPECT_TRUE(failsWith(file->load("q"), path, "tensor 'q': dtype F8_E4M3 is not supported"));
  auto ok = file->load("ok");
  ASSERT_TRUE(ok) << ok.error().str();
  EXPECT_EQ(valuesOf(*ok), (std::vector<float>{5}));
}

TEST_F(SafetensorsTest, GapsAndEmptyTensorsAreNotOverlaps) {
  std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("e":{"dtype":"F32","shape":[0],"data_offsets":[2,2]},)"
                       R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  EXPECT_EQ(loadValues(header, le<float>({1, 99, 2}), "b"), (std::vector<float>{2}));
}

TEST_F(SafetensorsTest, TrailingSpacesAndMetadataAreAccepted) {
  auto file = openImage(R"({"__metadata__":{"format":"pt"}}   )", "");
  ASSERT_TRUE(file) << file.error().str();
  EXPECT_TRUE(file->entries().empty());
  EXPECT_EQ(file->metadata().at("format"), "pt");
}

TEST_F(SafetensorsTest, MissingTensorIsAnError) {
  ASSERT_TRUE(writeSafetensors(path, {{"x", tensorOf({1}, {1})}}));
  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(file);
  EXPECT_TRUE(failsWith(file->load("y"), path, "no tensor named 'y'"));
}

TEST_F(SafetensorsTest, MissingFileIsAnError) {
  EXPECT_TRUE(failsWith(SafetensorsFile::open(dir + "/none.safetensors"), dir + "/none.safetensors",
                        "cannot open file"));
}

TEST_F(SafetensorsTest, FileShorterThanTheHeaderLength) {
  writeBytes(path, std::string("\x05\x00\x00", 3));
  EXPECT_TRUE(failsWith(SafetensorsFile::open(path), path,
                        "file is 3 bytes, too short for the 8-byte header length"));
}

TEST_F(SafetensorsTest, HeaderLengthLargerThanTheFile) {
  writeBytes(path, le<uint64_t>({1000}) + "{}");
  EXPECT_TRUE(failsWith(SafetensorsFile::open(path), path,
                        "header length 1000 runs past the end of the file (2 bytes follow it)"));
}

TEST_F(SafetensorsTest, HeaderLengthOverTheCap) {
  writeBytes(path, le<uint64_t>({uint64_t(1) << 40}) + "{}");
  EXPECT_TRUE(failsWith(SafetensorsFile::open(path), path,
                        "header length 1099511627776 is larger than the 100000000-byte limit"));
}

TEST_F(SafetensorsTest, TruncatedDataSection) {
  ASSERT_TRUE(writeSafetensors(path, {{"vit.layernorm.weight", Tensor::zeros({1000})}}));
  std::string bytes = readBytes(path);
  writeBytes(path, bytes.substr(0, bytes.size() - 1000));
  EXPECT_TRUE(failsWith(SafetensorsFile::open(path), path,
                        "tensor 'vit.layernorm.weight': data offsets [0, 4000) run past the end "
                        "of the data section (3000 bytes)"));
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  EXPECT_TRUE(failsWith(openImage(header, std::string(12, '\0')), path,
                        "tensors 'a' [0, 8) and 'b' [4, 12) overlap"));
}

TEST_F(SafetensorsTest, SizeDisagreesWithShape) {
  std::string header = R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})";
  EXPECT_TRUE(failsWith(openImage(header, std::string(8, '\0')), path,
                        "tensor 'w': data offsets [0, 8) hold 8 bytes, but F32 [3] needs 12"));
}

TEST_F(SafetensorsTest, ReversedOffsets) {
  std::string header = R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})";
  EXPECT_TRUE(failsWith(openImage(header, std::string(8, '\0')), path,
                        "tensor 'w': data offsets [8, 4) end before they begin"));
}

struct BadHeader {
  const char *header;
  const char *error;
};

void PrintTo(const BadHeader &c, std::ostream *os) { *os << c.header; }

class SafetensorsBadHeader : public SafetensorsTest,
                             public ::testing::WithParamInterface<BadHeader> {};

TEST_P(SafetensorsBadHeader, IsRefusedWithTheProblemNamed) {
  EXPECT_TRUE(
      failsWith(openImage(GetParam().header, std::string(64, '\0')), path, GetParam().error));
}

// Each header is wrong in one way; the data section is 64 zero bytes.
INSTANTIATE_TEST_SUITE_P(
    Cases, SafetensorsBadHeader,
    ::testing::Values(
        BadHeader{R"({"w":{"dtype":"F32",)", "header is not valid JSON: parse error at line 1"},
        BadHeader{"", "header is not valid JSON"},
        BadHeader{R"({"w":1} trailing)", "header is not valid JSON"},
        BadHeader{R"(["w"])", "header is a JSON array, not an object"},
        BadHeader{R"("text")", "header is a JSON string, not an object"},
        BadHeader{R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                  R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                  "'w' appears twice in the header"},
        BadHeader{R"({"w":[1,2]})", "tensor 'w': entry is a JSON array, not an object"},
        BadHeader{R"({"w":{"shape":[1],"data_offsets":[0,4]}})",
                  "tensor 'w': entry has no 'dtype'"},
        BadHeader{R"({"w":{"dtype":32,"shape":[1],"data_offsets":[0,4]}})",
                  "tensor 'w': 'dtype' is a JSON number, not a string"},
        BadHeader{R"({"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})",
                  "tensor 'w': unknown dtype 'F33'"},
        BadHeader{R"({"w":{"dtype":"F32","data_offsets":[0,4]}})",
                  "tensor 'w': entry has no 'shape'"},
        BadHeader{R"({"w":{"dtype":"F32","shape":4,"data_offsets":[0,4]}})",
                  "tensor 'w': 'shape' is a JSON number, not an array"},
        BadHeader{R"({"w":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,4]}})",
                  "tensor 'w': shape dimension 1 is -1; dimensions must be non-negative integers"},
        BadHeader{R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,4]}})",
                  "tensor 'w': shape dimension 0 is 2.5"},
        BadHeader{R"({"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,4]}})",
                  "tensor 'w': shape dimension 0 is \"2\""},
        BadHeader{R"({"w":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]}})",
                  "tensor 'w': shape dimension 0 is 18446744073709551615"},
        BadHeader{
            R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})",
            "tensor 'w': shape [4294967296,4294967296] has more elements than fit in 64 bits"},
        BadHeader{R"({"w":{"dtype":"F32","shape":[2305843009213693952],"data_offsets":[0,4]}})",
                  "tensor 'w': shape [2305843009213693952] is too large: its byte size does not "
                  "fit in 64 bits"},
        BadHeader{R"({"w":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})",
                  "tensor 'w': F4 [3] does not fill a whole number of bytes"},
        BadHeader{R"({"w":{"dtype":"F32","shape":[1]}})",
                  "tensor 'w': entry has no 'data_offsets'"},
        BadHeader{R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4]}})",
                  "tensor 'w': 'data_offsets' is [4]; it must be [begin, end]"},
        BadHeader{R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})",
                  "tensor 'w': 'data_offsets' is [-4,0]; it must be [begin, end]"},
        BadHeader{R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[64,68]}})",
                  "tensor 'w': data offsets [64, 68) run past the end of the data section (64 "
                  "bytes)"},
        BadHeader{R"({"__metadata__":["pt"]})",
                  "'__metadata__' is a JSON array, not an object of strings"},
        BadHeader{R"({"__metadata__":{"format":1}})",
                  "'__metadata__' entry 'format' is a JSON number, not a string"}));

TEST_F(SafetensorsTest, WriterRefusesBadInputAndLeavesNoFile) {
  Tensor t = tensorOf({1}, {1});
  EXPECT_TRUE(
      failsWith(writeSafetensors(path, {{"a", t}, {"a", t}}), path, "tensor 'a' is given twice"));
  EXPECT_TRUE(failsWith(writeSafetensors(path, {{"a", Tensor()}}), path, "tensor 'a' has no data"));
  EXPECT_TRUE(failsWith(writeSafetensors(path, {{"__metadata__", t}}), path,
                        "cannot write a tensor named '__metadata__'"));
  EXPECT_TRUE(failsWith(writeSafetensors(path, {{std::string("\xff\xfe"), t}}), path,
                        "cannot write the header"));
  EXPECT_TRUE(filesIn(dir).empty());
}

TEST_F(SafetensorsTest, WriterErrorKeepsTheOldFile) {
  ASSERT_TRUE(writeSafetensors(path, {{"old", tensorOf({1}, {1})}}));
  std::string before = readBytes(path);
  EXPECT_FALSE(writeSafetensors(path, {{"new", Tensor()}}));
  EXPECT_EQ(readBytes(path), before);
  EXPECT_EQ(filesIn(dir), (std::vector<std::string>{"model.safetensors"}));
}

} // namespace
} // namespace vitc::formats
