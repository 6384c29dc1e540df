// Layout files: read into a typed layout, checked setting by setting, and written back the same.
#include <fstream>

#include <gtest/gtest.h>

#include "passes/layout.h"
#include "tests/common/subprocess.h"

namespace vitc::passes {
namespace {

Expected<LayoutFile> readText(const std::string &text) {
  std::string path = test::makeTempDir("layout-file") + "/l.json";
  std::ofstream(path) << text;
  return readLayoutFile(path);
}

TEST(LayoutFile, EveryKeyIsReadTyped) {
  Expected<LayoutFile> f = readText(R"({"mesh": {"dp": 2, "mp": 4}, "data_axis": "dp",
      "model_axis": "mp", "activations": "replicated", "params_over_data": true,
      "params_over_data_min_bytes": 0, "collective_matmul": false, "microbatches": 4,
      "predicted": {"step": 1}, "comment": "for people"})");
  ASSERT_TRUE(f) << f.error().str();
  EXPECT_EQ(f->mesh, "dp=2,mp=4");
  EXPECT_EQ(f->layout.dataAxis, "dp");
  EXPECT_EQ(f->layout.modelAxis, "mp");
  EXPECT_EQ(f->layout.activations, Layout::Activations::Replicated);
  EXPECT_TRUE(f->layout.paramsOverData);
  EXPECT_EQ(f->layout.paramsOverDataMinBytes, 0);
  EXPECT_FALSE(f->layout.collectiveMatmul);
  EXPECT_EQ(f->layout.microbatches, 4);
}

TEST(LayoutFile, KeysLeftOutKeepTheirDefaults) {
  Expected<LayoutFile> f = readText(R"({"microbatches": 2})");
  ASSERT_TRUE(f) << f.error().str();
  Layout expected;
  expected.microbatches = 2;
  EXPECT_TRUE(f->layout == expected);
  EXPECT_EQ(f->mesh, "");
}

TEST(LayoutFile, AWrittenLayoutReadsBackTheSame) {
  Layout l;
  l.dataAxis = "dp";
  l.activations = Layout::Activations::Replicated;
  l.paramsOverData = true;
  l.paramsOverDataMinBytes = 7;
  l.collectiveMatmul = false;
  l.microbatches = 3;
  Expected<LayoutFile> f = readText(writeLayoutJson(l, ir::Mesh{{{"dp", 2}, {"model", 2}}}));
  ASSERT_TRUE(f) << f.error().str();
  EXPECT_TRUE(f->layout == l);
  EXPECT_EQ(f->mesh, "dp=2,model=2");
}

// Each value is checked as its `--pass-option` is, and must have its JSON type: one line, naming
// the key as the file spells it.
TEST(LayoutFile, BadValuesAreOneLineErrorsNamingTheKey) {
  struct Bad {
    const char *json, *message;
  };
  const Bad bad[] = {
      {R"({"activations": "columns"})", "'activations' must be one of: tokens replicated"},
      {R"({"activations": 1})", "'activations' must be one of: tokens replicated"},
      {R"({"microbatches": "abc"})", "'microbatches' must be an integer from 1 to 1048576"},
      {R"({"microbatches": "2"})", "'microbatches' must be an integer from 1 to 1048576"},
      {R"({"microbatches": 0})", "'microbatches' must be an integer from 1 to 1048576"},
      {R"({"microbatches": 2.5})", "'microbatches' must be an integer from 1 to 1048576"},
      {R"({"microbatches": 99999999999999999999})", "'microbatches' must be an integer"},
      {R"({"params_over_data": "true"})", "'params_over_data' must be true or false"},
      {R"({"params_over_data_min_bytes": -1})", "'params_over_data_min_bytes' must be an integer"},
      {R"({"data_axis": ""})", "'data_axis' must be a mesh axis name"},
      {R"({"model_axis": null})", "'model_axis' must be a mesh axis name"},
      {R"({"colour": "red"})", "unknown layout key 'colour'"},
      {R"({"params-over-data": true})", "unknown layout key 'params-over-data'"},
      {R"({"layout.microbatches": 2})", "unknown layout key 'layout.microbatches'"},
      {R"({"mesh": {"data": 0}})", "mesh axis 'data' needs a positive integer size"},
      {R"([1])", "a layout is a JSON object"},
  };
  for (const Bad &b : bad) {
    Expected<LayoutFile> f = readText(b.json);
    ASSERT_FALSE(f) << b.json;
    std::string e = f.error().str();
    EXPECT_NE(e.find("l.json: error: " + std::string(b.message)), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
}

} // namespace
} // namespace vitc::passes
