// .npy: round trips, numpy's header layout, every dtype converted, Fortran order, and bad files.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "frontend/formats/npy.h"
#include "tests/frontend/formats/format_test_util.h"

namespace vitc::formats {
namespace {

using namespace testing_util;

// A .npy image with `dict` as its header, padded as numpy pads it.
std::string npyWithDict(const std::string &dict, const std::string &payload, int major = 1) {
  size_t prefix = major == 1 ? 10 : 12;
  std::string header = dict;
  header.append(64 - (prefix + header.size() + 1) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  out += major == 1 ? le<uint16_t>({static_cast<uint16_t>(header.size())})
                    : le<uint32_t>({static_cast<uint32_t>(header.size())});
  return out + header + payload;
}

std::string npy(const std::string &descr, const std::string &shape, const std::string &payload,
                bool fortran = false, int major = 1) {
  return npyWithDict("{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
                         ", 'shape': " + shape + ", }",
                     payload, major);
}

struct NpyTest : ::testing::Test {
  std::string dir = testDir();
  std::string path = dir + "/array.npy";

  Expected<Tensor> readImage(const std::string &bytes) {
    writeBytes(path, bytes);
    return readNpy(path);
  }
};

TEST_F(NpyTest, WrittenArraysReadBack) {
  for (const Tensor &t :
       {tensorOf({2, 3}, {1, 2, 3, -4, 5.5f, 1e-20f}), tensorOf({}, {7}),
        tensorOf({5}, {1, 2, 3, 4, 5}), Tensor::zeros({0, 4}), tensorOf({2, 1, 2}, {9, 8, 7, 6})}) {
    ASSERT_TRUE(writeNpy(path, t));
    auto back = readNpy(path);
    ASSERT_TRUE(back) << back.error().str();
    EXPECT_EQ(back->shape(), t.shape());
    EXPECT_EQ(valuesOf(*back), valuesOf(t));
  }
}

TEST_F(NpyTest, WriterUsesNumpysVersion1Layout) {
  ASSERT_TRUE(writeNpy(path, tensorOf({2, 3}, {1, 2, 3, 4, 5, 6})));
  std::string bytes = readBytes(path);
  ASSERT_EQ(bytes.size(), 128u + 24u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_EQ(bytes.substr(8, 2), le<uint16_t>({118}));
  std::string header = bytes.substr(10, 118);
  EXPECT_EQ(header.substr(0, header.find('}') + 1),
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
  EXPECT_EQ(header.back(), '\n');
  EXPECT_EQ(header.find_first_not_of(' ', header.find('}') + 1), header.size() - 1);
  EXPECT_EQ(bytes.substr(128), le<float>({1, 2, 3, 4, 5, 6}));
}

TEST_F(NpyTest, HeaderSpellsOneAndZeroDimensionalShapesAsPythonDoes) {
  EXPECT_NE(npyHeader({5}).find("'shape': (5,), }"), std::string::npos);
  EXPECT_NE(npyHeader({}).find("'shape': (), }"), std::string::npos);
  EXPECT_NE(npyHeader({1, 2, 3}).find("'shape': (1, 2, 3), }"), std::string::npos);
  for (const Shape &s : {Shape{}, Shape{5}, Shape{100000, 100000, 7}})
    EXPECT_EQ(npyHeader(s).size() % 64, 0u);
}

TEST_F(NpyTest, ReadsFormatVersions2And3) {
  for (int major : {2, 3}) {
    auto t = readImage(npy("<f4", "(2,)", le<float>({1.25f, -3}), false, major));
    ASSERT_TRUE(t) << t.error().str();
    EXPECT_EQ(t->shape(), (Shape{2}));
    EXPECT_EQ(valuesOf(*t), (std::vector<float>{1.25f, -3}));
  }
}

struct DtypeCase {
  const char *descr;
  std::string payload;
  std::vector<float> values;
};

TEST_F(NpyTest, ConvertsEveryFloatAndIntegerDtype) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<DtypeCase> cases = {
      {"<f4", le<float>({1.5f, -inf, 3e38f}), {1.5f, -inf, 3e38f}},
      {">f4", be<float>({1.5f, -inf, 3e38f}), {1.5f, -inf, 3e38f}},
      {"=f4", le<float>({2, 4, 8}), {2, 4, 8}},
      {"<f8", le<double>({0.1, -1e300, 2}), {0.1f, -inf, 2}},
      {">f8", be<double>({0.1, 1e-300, -2}), {0.1f, 0, -2}},
      {"<f2", le<uint16_t>({0x3c00, 0x0001, 0xfc00}), {1, std::ldexp(1.0f, -24), -inf}},
      {">f2", be<uint16_t>({0x3c00, 0x0001, 0xfc00}), {1, std::ldexp(1.0f, -24), -inf}},
      {"|i1", le<int8_t>({-128, 0, 127}), {-128, 0, 127}},
      {"|u1", le<uint8_t>({0, 128, 255}), {0, 128, 255}},
      {"<i2", le<int16_t>({-32768, -1, 32767}), {-32768, -1, 32767}},
      {">i2", be<int16_t>({-32768, -1, 32767}), {-32768, -1, 32767}},
      {"<u2", le<uint16_t>({0, 1, 65535}), {0, 1, 65535}},
      {">u2", be<uint16_t>({0, 1, 65535}), {0, 1, 65535}},
      {"<i4", le<int32_t>({INT32_MIN, -7, 16777216}), {-2147483648.0f, -7, 16777216}},
      {">i4", be<int32_t>({INT32_MIN, -7, 16777216}), {-2147483648.0f, -7, 16777216}},
      {"<u4", le<uint32_t>({0, 3, UINT32_MAX}), {0, 3, 4294967296.0f}},
      {">u4", be<uint32_t>({0, 3, UINT32_MAX}), {0, 3, 4294967296.0f}},
      {"<i8", le<int64_t>({INT64_MIN, -1, 5}), {-9223372036854775808.0f, -1, 5}},
      {">i8", be<int64_t>({INT64_MIN, -1, 5}), {-9223372036854775808.0f, -1, 5}},
      {"<u8", le<uint64_t>({0, 9, UINT64_MAX}), {0, 9, 18446744073709551616.0f}},
      {">u8", be<uint64_t>({0, 9, UINT64_MAX}), {0, 9, 18446744073709551616.0f}},
  };
  for (const DtypeCase &c : cases) {
    auto t = readImage(npy(c.descr, "(3,)", c.payload));
    ASSERT_TRUE(t) << c.descr << ": " << t.error().str();
    EXPECT_EQ(t->shape(), (Shape{3})) << c.descr;
    EXPECT_EQ(valuesOf(*t), c.values) << c.descr;
  }
}

TEST_F(NpyTest, FortranOrderIsRearrangedIntoCOrder) {
  // [[1, 2, 3], [4, 5, 6]] stored column-major.
  auto t = readImage(npy("<f4", "(2, 3)", le<float>({1, 4, 2, 5, 3, 6}), true));
  ASSERT_TRUE(t) << t.error().str();
  EXPECT_EQ(t->shape(), (Shape{2, 3}));
  EXPECT_EQ(valuesOf(*t), (std::vector<float>{1, 2, 3, 4, 5, 6}));

  // A 3-d array, converted from float64 on the way: element [i][j][k] = 100i + 10j + k, stored
  // with i running fastest.
  std::string payload;
  for (int k = 0; k < 4; ++k)
    for (int j = 0; j < 3; ++j)
      for (int i = 0; i < 2; ++i)
        payload += le<double>({100.0 * i + 10 * j + k});
  auto u = readImage(npy("<f8", "(2, 3, 4)", payload, true));
  ASSERT_TRUE(u) << u.error().str();
  std::vector<float> want;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k)
        want.push_back(100.0f * i + 10 * j + k);
  EXPECT_EQ(valuesOf(*u), want);

  // Fortran order changes nothing for one dimension, and nothing breaks for none or zero size.
  auto v = readImage(npy("<f4", "(3,)", le<float>({1, 2, 3}), true));
  ASSERT_TRUE(v) << v.error().str();
  EXPECT_EQ(valuesOf(*v), (std::vector<float>{1, 2, 3}));
  auto w = readImage(npy("<f4", "(0, 5)", "", true));
  ASSERT_TRUE(w) << w.error().str();
  EXPECT_EQ(w->shape(), (Shape{0, 5}));
}

TEST_F(NpyTest, ZeroDimensionalArrayHasEmptyShape) {
  auto t = readImage(npy("<i8", "()", le<int64_t>({42})));
  ASSERT_TRUE(t) << t.error().str();
  EXPECT_EQ(t->shape(), Shape{});
  EXPECT_EQ(valuesOf(*t), (std::vector<float>{42}));
}

TEST_F(NpyTest, HeaderDictIsParsedAsAPythonLiteral) {
  std::string data = le<float>({1, 2, 3, 4, 5, 6});
  for (std::string dict : {
           std::string("{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}"),
           std::string("{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, 3)}"),
           std::string("{ 'descr' : '<f4' ,\n 'fortran_order':False,'shape':( 2 ,3 , ) , }"),
           std::string("{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }"),
           std::string("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': None}"),
       }) {
    auto t = readImage(npyWithDict(dict, data));
    ASSERT_TRUE(t) << dict << ": " << t.error().str();
    EXPECT_EQ(t->shape(), (Shape{2, 3})) << dict;
    EXPECT_EQ(valuesOf(*t), (std::vector<float>{1, 2, 3, 4, 5, 6})) << dict;
  }
}

TEST_F(NpyTest, ParseNpyNamesTheMemberInErrors) {
  std::string bytes = npy("<f4", "(2,)", le<float>({1, 2}));
  auto t = parseNpy(reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size(), "m.npz:a.npy");
  ASSERT_TRUE(t) << t.error().str();
  EXPECT_EQ(valuesOf(*t), (std::vector<float>{1, 2}));
  // A copy, not a view of the caller's buffer.
  EXPECT_FALSE(t->data() >= reinterpret_cast<const float *>(bytes.data()) &&
               t->data() < reinterpret_cast<const float *>(bytes.data() + bytes.size()));

  std::string bad = "PK\x03\x04 not npy";
  EXPECT_TRUE(
      failsWith(parseNpy(reinterpret_cast<const uint8_t *>(bad.data()), bad.size(), "m.npz:a.npy"),
                "m.npz:a.npy", "not a .npy file"));
}

TEST_F(NpyTest, MissingFile) {
  EXPECT_TRUE(failsWith(readNpy(dir + "/none.npy"), dir + "/none.npy", "cannot open file"));
}

TEST_F(NpyTest, BadMagic) {
  EXPECT_TRUE(failsWith(readImage(std::string("\x93NUMPX\x01\x00\x02\x00{}", 12)), path,
                        "not a .npy file: it does not start with the magic \\x93NUMPY"));
  EXPECT_TRUE(failsWith(readImage(""), path, "not a .npy file"));
}

TEST_F(NpyTest, UnsupportedVersion) {
  std::string image = npy("<f4", "(1,)", le<float>({1}));
  image[6] = 4;
  EXPECT_TRUE(failsWith(readImage(image), path, "unsupported .npy format version 4.0"));
  image[6] = 1;
  image[7] = 1;
  EXPECT_TRUE(failsWith(readImage(image), path, "unsupported .npy format version 1.1"));
}

TEST_F(NpyTest, HeaderLengthRunsPastTheEnd) {
  EXPECT_TRUE(failsWith(readImage(std::string("\x93NUMPY\x01\x00\xff\x00{'descr'", 17)), path,
                        "header length 255 runs past the end of the file (7 bytes follow it)"));
  EXPECT_TRUE(failsWith(readImage(std::string("\x93NUMPY\x02\x00\x01", 9)), path,
                        "file ends inside the .npy header length (9 bytes)"));
}

TEST_F(NpyTest, TruncatedDataSaysHowMuchIsMissing) {
  std::string image = npy("<f4", "(2, 3)", le<float>({1, 2, 3, 4, 5, 6}));
  EXPECT_TRUE(failsWith(readImage(image.substr(0, image.size() - 10)), path,
                        "data is truncated: shape [2, 3] of '<f4' needs 24 bytes, the file holds "
                        "14 (10 bytes missing)"));
}

TEST_F(NpyTest, TrailingBytesAfterTheData) {
  EXPECT_TRUE(failsWith(readImage(npy("<f4", "(1,)", le<float>({1, 2}))), path,
                        "4 unexpected bytes after the data of shape [1] of '<f4'"));
}

struct BadNpy {
  std::string dict;
  std::string error;
};

void PrintTo(const BadNpy &c, std::ostream *os) { *os << c.dict; }

class NpyBadHeader : public NpyTest, public ::testing::WithParamInterface<BadNpy> {};

TEST_P(NpyBadHeader, IsRefusedWithTheProblemNamed) {
  EXPECT_TRUE(failsWith(readImage(npyWithDict(GetParam().dict, std::string(64, '\0'))), path,
                        GetParam().error));
}

std::string dictWith(const std::string &descr, const std::string &shape = "(4,)",
                     const std::string &fortran = "False") {
  return "{'descr': " + descr + ", 'fortran_order': " + fortran + ", 'shape': " + shape + ", }";
}

// Headers that are wrong in one way each; the data is 64 zero bytes.
INSTANTIATE_TEST_SUITE_P(
    Cases, NpyBadHeader,
    ::testing::Values(
        BadNpy{dictWith("'|b1'"), "unsupported dtype '|b1' (booleans)"},
        BadNpy{dictWith("'|O'"), "unsupported dtype '|O' (Python objects)"},
        BadNpy{dictWith("'<U5'"), "unsupported dtype '<U5' (unicode strings)"},
        BadNpy{dictWith("'|S3'"), "unsupported dtype '|S3' (byte strings)"},
        BadNpy{dictWith("'<c8'"), "unsupported dtype '<c8' (complex numbers)"},
        BadNpy{dictWith("'<M8[ns]'"), "unsupported dtype '<M8[ns]' (datetimes)"},
        BadNpy{dictWith("'<f16'"), "unsupported dtype '<f16' (floats of this width)"},
        BadNpy{dictWith("'<i3'"), "unsupported dtype '<i3' (integers of this width)"},
        BadNpy{dictWith("'<V8'"), "unsupported dtype '<V8' (raw or structured records)"},
        BadNpy{dictWith("[('a', '<f4'), ('b', '<i4')]"),
               "unsupported dtype [('a', '<f4'), ('b', '<i4')]: structured arrays are not "
               "supported"},
        BadNpy{dictWith("4"), "header 'descr' is 4, not a dtype string"},
        BadNpy{"{'descr': '<f4', 'fortran_order': False}",
               "malformed .npy header: it has no 'shape'"},
        BadNpy{"{'shape': (4,), 'fortran_order': False}",
               "malformed .npy header: it has no 'descr'"},
        BadNpy{"{'descr': '<f4', 'shape': (4,)}",
               "malformed .npy header: it has no 'fortran_order'"},
        BadNpy{dictWith("'<f4'", "(4,)", "1"),
               "malformed .npy header: 'fortran_order' is 1, not True or False"},
        BadNpy{dictWith("'<f4'", "(-1, 4)"),
               "malformed .npy header: 'shape' is (-1, 4); it must be a tuple of non-negative "
               "integers"},
        BadNpy{dictWith("'<f4'", "[4]"), "malformed .npy header: 'shape' is [4]"},
        BadNpy{dictWith("'<f4'", "(4)"), "malformed .npy header: 'shape' is 4"},
        BadNpy{dictWith("'<f4'", "('4',)"), "malformed .npy header: 'shape' is ('4',)"},
        BadNpy{dictWith("'<f4'", "(4294967296, 4294967296)"),
               "shape (4294967296, 4294967296) has more elements than fit in 64 bits"},
        BadNpy{dictWith("'<f4'", "(4611686018427387904,)"),
               "shape [4611686018427387904] of '<f4' is too large: its byte size does not fit"},
        BadNpy{dictWith("'<f4'", "(99999999999999999999,)"),
               "malformed .npy header: integer does not fit in 64 bits at byte 70"},
        BadNpy{"{'descr': '<f4', 'fortran_order': False, 'shape': (4,), ",
               "malformed .npy header: unexpected end of the header"},
        BadNpy{"{'descr' '<f4'}", "malformed .npy header: expected ':' after a dict key at byte 9"},
        BadNpy{"{'descr': '<f4}", "malformed .npy header: unterminated string"},
        BadNpy{"{4: '<f4'}", "malformed .npy header: dict key 4 is not a string"},
        BadNpy{"{'descr': '<f4' 'x': 1}", "malformed .npy header: expected ',' or '}'"},
        BadNpy{"{'descr': (1 2)}", "malformed .npy header: expected ',' or ')'"},
        BadNpy{"{'descr': nan}", "malformed .npy header: unexpected character 'n' at byte 10"},
        BadNpy{"{'descr': Truex}", "malformed .npy header: unexpected character 'T'"},
        BadNpy{"{'descr': '<f4'} extra", "malformed .npy header: unexpected text after the dict"},
        BadNpy{"('<f4', False, (4,))", "malformed .npy header: ('<f4', False, (4,)) is not a dict"},
        BadNpy{"{'descr': " + std::string(200, '(') + "1" + std::string(200, ')') + "}",
               "malformed .npy header: literal nested too deeply"}));

TEST_F(NpyTest, NonAsciiHeaderByteIsNamed) {
  EXPECT_TRUE(failsWith(readImage(npyWithDict("{'descr': \x01}", "")), path,
                        "unexpected byte 0x01 at byte 10"));
}

TEST_F(NpyTest, WriterRefusesAnEmptyTensorAndLeavesNoFile) {
  EXPECT_TRUE(failsWith(writeNpy(path, Tensor()), path, "cannot write a tensor that has no data"));
  EXPECT_TRUE(filesIn(dir).empty());
}

} // namespace
} // namespace vitc::formats
