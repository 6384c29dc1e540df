// Pass settings: parsed once from KEY=VALUE into typed fields, with one-line errors naming them.
#include <gtest/gtest.h>

#include "passes/pass_options.h"

namespace vitc::passes {
namespace {

// Applies KEY=VALUE settings in order, as `--pass-option` does over a layout file's.
PassOptions withSettings(PassOptions options,
                         const std::vector<std::pair<std::string, std::string>> &settings) {
  for (const auto &[key, value] : settings) {
    Expected<PassSetting> s = PassSetting::parse(key, value);
    EXPECT_TRUE(s) << key << "=" << value << ": " << (s ? "" : s.error().str());
    if (s)
      s->applyTo(options);
  }
  return options;
}

TEST(PassSettings, KnownSettingsWithGoodValuesAreAccepted) {
  for (const auto &[key, value] : passSettingsOf(PassOptions{}))
    EXPECT_TRUE(PassSetting::parse(key, value)) << key << "=" << value;
  EXPECT_TRUE(PassSetting::parse("layout.activations", "replicated"));
  EXPECT_TRUE(PassSetting::parse("layout.microbatches", "8"));
  EXPECT_TRUE(PassSetting::parse("layout.model-axis", "model"));
  EXPECT_FALSE(PassSetting::parse("model-axis", "model")); // the layout's name is the only one
}

TEST(PassSettings, SetTypedFieldsThatPassesRead) {
  PassOptions o = withSettings({}, {{"layout.microbatches", "4"},
                                    {"layout.activations", "replicated"},
                                    {"layout.model-axis", "mp"},
                                    {"layout.data-axis", "dp"},
                                    {"layout.collective-matmul", "false"},
                                    {"layout.params-over-data", "true"},
                                    {"layout.params-over-data-min-bytes", "0"},
                                    {"dtype", "bf16"}});
  EXPECT_EQ(o.dtype, ir::DType::BF16);
  EXPECT_EQ(o.layout.microbatches, 4);
  EXPECT_EQ(o.layout.activations, Layout::Activations::Replicated);
  EXPECT_EQ(o.layout.modelAxis, "mp");
  EXPECT_EQ(o.layout.dataAxis, "dp");
  EXPECT_FALSE(o.layout.collectiveMatmul);
  EXPECT_TRUE(o.layout.paramsOverData);
  EXPECT_EQ(o.layout.paramsOverDataMinBytes, 0);
}

// `--pass-option` is applied over the layout file's settings: the later of one key wins, and a
// setting leaves the others as they were.
TEST(PassSettings, ALaterSettingOfOneKeyWins) {
  PassOptions fromFile;
  fromFile.layout.microbatches = 2;
  fromFile.layout.activations = Layout::Activations::Replicated;
  PassOptions o = withSettings(fromFile, {{"layout.microbatches", "8"}});
  EXPECT_EQ(o.layout.microbatches, 8);
  EXPECT_EQ(o.layout.activations, Layout::Activations::Replicated);
  o = withSettings(o, {{"layout.microbatches", "3"}});
  EXPECT_EQ(o.layout.microbatches, 3);
}

// Every field of the layout is a setting: a layout unlike the default in every field survives
// its text. A field missing from the table would come back with its default.
TEST(PassSettings, EveryFieldSurvivesItsText) {
  PassOptions o;
  o.layout.dataAxis = "dp";
  o.layout.modelAxis = "mp";
  o.layout.activations = Layout::Activations::Replicated;
  o.layout.paramsOverData = true;
  o.layout.paramsOverDataMinBytes = 12345;
  o.layout.collectiveMatmul = false;
  o.layout.microbatches = 6;
  o.dtype = ir::DType::BF16;
  PassOptions back = withSettings({}, passSettingsOf(o));
  EXPECT_TRUE(back.layout == o.layout);
  EXPECT_EQ(back.dtype, ir::DType::BF16);
  // And each field differs from the default, so that the comparison above means something.
  Layout d;
  EXPECT_NE(o.layout.dataAxis, d.dataAxis);
  EXPECT_NE(o.layout.modelAxis, d.modelAxis);
  EXPECT_NE(o.layout.activations, d.activations);
  EXPECT_NE(o.layout.paramsOverData, d.paramsOverData);
  EXPECT_NE(o.layout.paramsOverDataMinBytes, d.paramsOverDataMinBytes);
  EXPECT_NE(o.layout.collectiveMatmul, d.collectiveMatmul);
  EXPECT_NE(o.layout.microbatches, d.microbatches);
}

TEST(PassSettings, BadKeysAndValuesAreErrorsNamingTheSetting) {
  struct Bad {
    const char *key, *value, *message;
  };
  const Bad bad[] = {
      {"layout.colour", "red",
       "unknown pass option 'layout.colour' (known: dtype, layout.activations"},
      {"", "1", "unknown pass option ''"},
      {"layout.microbatches", "abc", "pass option layout.microbatches='abc': expected an integer"},
      {"layout.microbatches", "", "pass option layout.microbatches='': expected an integer"},
      {"layout.microbatches", "2x", "expected an integer"},
      {"layout.microbatches", "0", "layout.microbatches=0 is out of range: expected 1 to"},
      {"layout.microbatches", "-3", "is out of range"},
      {"layout.params-over-data-min-bytes", "99999999999999999999", "is out of range"},
      {"layout.activations", "columns", "expected one of: tokens replicated"},
      {"layout.activations", "token", "expected one of: tokens replicated"},
      {"layout.activations", "", "expected one of: tokens replicated"},
      {"layout.collective-matmul", "1", "expected true or false"},
      {"layout.data-axis", "", "expected a mesh axis name"},
      {"layout.model-axis", "a,b", "expected a mesh axis name"},
      {"dtype", "f16", "pass option dtype='f16': expected one of: f32 bf16"},
  };
  for (const Bad &b : bad) {
    Expected<PassSetting> s = PassSetting::parse(b.key, b.value);
    ASSERT_FALSE(s) << b.key << "=" << b.value;
    EXPECT_NE(s.error().message().find(b.message), std::string::npos) << s.error().message();
    EXPECT_EQ(s.error().message().find('\n'), std::string::npos) << s.error().message();
  }
}

TEST(PassSettings, WordsAreNamesAndChoices) {
  EXPECT_TRUE(PassSetting::parse("layout.activations", "tokens")->isWord());
  EXPECT_TRUE(PassSetting::parse("layout.model-axis", "model")->isWord());
  EXPECT_FALSE(PassSetting::parse("layout.microbatches", "2")->isWord());
  EXPECT_FALSE(PassSetting::parse("layout.collective-matmul", "true")->isWord());
  EXPECT_EQ(*describePassSetting("layout.microbatches"), "an integer from 1 to 1048576");
  EXPECT_EQ(*describePassSetting("layout.activations"), "one of: tokens replicated");
  EXPECT_FALSE(describePassSetting("layout.colour"));
}

} // namespace
} // namespace vitc::passes
