// vitc spec files and Hugging Face configs: what they describe, and the errors they get.
#include <gtest/gtest.h>

#include "frontend/hf_config.h"
#include "frontend/spec.h"
#include "frontend/vit_builder.h"
#include "ir/verifier.h"

namespace vitc::frontend {
namespace {

const char *kSpec = R"(# a comment
name = "t"
[image]
size = 32
patch = 8
[encoder]
width = 64
depth = 2
heads = 4
block = "parallel"
qk_norm = true
[bias]
qkv = false
norm = false
[head]
pool = "map"
classes = 10
)";

TEST(Spec, ReadsEveryKeyAndDefaults) {
  auto c = parseSpec(kSpec, "t.vit");
  ASSERT_TRUE(c) << c.error().str();
  EXPECT_EQ(c->name, "t");
  EXPECT_EQ(c->image, 32);
  EXPECT_EQ(c->patch, 8);
  EXPECT_EQ(c->channels, 3);
  EXPECT_EQ(c->mlp, 256); // 4 x width when not given
  EXPECT_EQ(c->block, BlockKind::Parallel);
  EXPECT_TRUE(c->qkNorm);
  EXPECT_FALSE(c->biasQkv);
  EXPECT_TRUE(c->biasOut);
  EXPECT_FALSE(c->biasNorm);
  EXPECT_EQ(c->pool, PoolKind::Map);
  EXPECT_EQ(c->classes, 10);
  EXPECT_EQ(c->tokens(), 16);
}

TEST(Spec, WrittenSpecReadsBackTheSame) {
  auto c = parseSpec(kSpec, "t.vit");
  ASSERT_TRUE(c);
  auto again = parseSpec(writeSpec(*c), "again.vit");
  ASSERT_TRUE(again) << again.error().str();
  EXPECT_EQ(writeSpec(*again), writeSpec(*c));
}

struct BadSpec {
  std::string edit; // replaces the first line of the valid spec body below
  std::string error;
};

class SpecErrors : public testing::TestWithParam<BadSpec> {};

TEST_P(SpecErrors, OneLineWithLocation) {
  std::string text = "[image]\nsize = 224\npatch = 16\n[encoder]\nwidth = 768\ndepth = 12\n"
                     "heads = 12\n" +
                     GetParam().edit + "\n";
  auto c = parseSpec(text, "bad.vit");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().str(), GetParam().error);
  EXPECT_EQ(c.error().str().find('\n'), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    All, SpecErrors,
    testing::Values(
        BadSpec{"widht = 3", "bad.vit:8:1: error: unknown key 'widht' in [encoder] (known: width, "
                             "depth, mlp, heads, block, qk_norm, gelu, eps)"},
        BadSpec{"block = \"serial\"", "bad.vit:8:9: error: bad value \"serial\" for 'block': "
                                      "expected one of \"sequential\", \"parallel\""},
        BadSpec{"mlp = \"big\"", "bad.vit:8:7: error: 'mlp' must be an integer, not a string"},
        BadSpec{"heads = 7", "bad.vit:8:9: error: error while parsing key-value pair: cannot "
                             "redefine existing integer 'heads'"},
        BadSpec{"[head]\nclasses = -1",
                "bad.vit:9:11: error: classes must be between 0 and 16777216, got -1"},
        BadSpec{"[image]", "bad.vit:8:1: error: error while parsing table header: cannot redefine "
                           "existing table 'image'"},
        BadSpec{"[extras]\nx = 1", "bad.vit:8:2: error: unknown table [extras] (known: [image], "
                                   "[encoder], [bias], [head], [train])"},
        BadSpec{"eps = 0.0", "bad.vit:8:7: error: eps must be in (0, 1], got 0"},
        BadSpec{"qk_norm = 1", "bad.vit:8:11: error: 'qk_norm' must be true or false, not an "
                               "integer"},
        BadSpec{"depth2 = [", "bad.vit:8:12: error: error while parsing array: encountered "
                              "end-of-file"},
        BadSpec{"[train]\noptimizer = \"adam\"",
                "bad.vit:9:13: error: bad value \"adam\" for 'optimizer': expected one of \"sgd\", "
                "\"adamw\", \"adafactor\""},
        BadSpec{"[train]\nlr = -1.0", "bad.vit:9:6: error: 'lr' must not be negative"},
        BadSpec{"[train]\nepochs = 1.5",
                "bad.vit:9:10: error: 'epochs' must be an integer, not a number"}));

// A spec's [train] table and its normalization: what `vitc train` takes as the recipe.
TEST(Spec, TrainRecipeAndNormalization) {
  auto c = parseSpec("[image]\nsize = 28\npatch = 4\nchannels = 1\nmean = [0.5]\nstd = [0.25]\n"
                     "[encoder]\nwidth = 64\ndepth = 2\nheads = 4\n[train]\noptimizer = "
                     "\"adafactor\"\nlr = 1e-3\nbatch = 64\nepochs = 3\nwarmup = 10\n"
                     "schedule = \"rsqrt\"\naugment = \"crop-flip\"\nlabel_smoothing = 0.1\n",
                     "fm.vit");
  ASSERT_TRUE(c) << c.error().str();
  EXPECT_EQ(c->mean, std::vector<double>{0.5});
  EXPECT_EQ(c->std, std::vector<double>{0.25});
  EXPECT_EQ(c->train.optimizer, "adafactor");
  EXPECT_EQ(c->train.lr, 1e-3);
  EXPECT_EQ(c->train.batch, 64);
  EXPECT_EQ(c->train.epochs, 3);
  EXPECT_EQ(c->train.warmup, 10);
  EXPECT_EQ(c->train.schedule, "rsqrt");
  EXPECT_EQ(c->train.augment, "crop-flip");
  EXPECT_EQ(c->train.labelSmoothing, 0.1);
  EXPECT_FALSE(c->train.steps);
  auto bad = parseSpec("[image]\nchannels = 3\nmean = [0.1, 0.2]\n[encoder]\nwidth = 64\n"
                       "depth = 2\nheads = 4\n",
                       "rgb.vit");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().str(),
            "rgb.vit:3:8: error: 2 mean values for 3 channels (give one, or one per channel)");
}

TEST(Spec, HeadsMustDivideWidth) {
  auto c = parseSpec("[encoder]\nwidth = 6100\ndepth = 48\nheads = 48\n", "vit22b.vit");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().str(), "vit22b.vit:4:9: error: heads (48) must divide width (6100)");
}

TEST(Spec, PatchMustDivideImage) {
  auto c = parseSpec(
      "[image]\nsize = 224\npatch = 15\n[encoder]\nwidth = 64\ndepth = 1\nheads = 2\n", "p.vit");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().str(), "p.vit:3:9: error: patch (15) must divide the image size (224)");
}

TEST(Spec, MissingWidthIsNamed) {
  auto c = parseSpec("[encoder]\ndepth = 2\nheads = 2\n", "m.vit");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().str(), "m.vit: error: missing key 'width' in [encoder]");
}

TEST(HfConfig, ReadsViTConfigKeys) {
  auto c = parseHfConfig(R"({"architectures": ["ViTForImageClassification"], "model_type": "vit",
    "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "intermediate_size": 128, "image_size": 32, "patch_size": 8, "layer_norm_eps": 1e-06,
    "hidden_act": "gelu", "id2label": {"0": "cat", "1": "dog", "2": "eel"}})",
                         "hf/config.json");
  ASSERT_TRUE(c) << c.error().str();
  EXPECT_EQ(c->width, 64);
  EXPECT_EQ(c->classes, 3);
  EXPECT_EQ(c->labels[2], "eel");
  EXPECT_EQ(c->pool, PoolKind::Token);
  EXPECT_EQ(c->eps, 1e-6);
}

TEST(HfConfig, ViTModelOutputsFeatures) {
  auto c = parseHfConfig(R"({"model_type": "vit", "hidden_act": "gelu_pytorch_tanh"})", "c.json");
  ASSERT_TRUE(c) << c.error().str();
  EXPECT_EQ(c->classes, 0);
  EXPECT_EQ(c->gelu, GeluKind::Tanh);
  EXPECT_EQ(c->width, 768); // ViTConfig's defaults
  EXPECT_EQ(c->eps, 1e-12);
}

TEST(HfConfig, Errors) {
  auto malformed = parseHfConfig("{\n  \"hidden_size\": 64,\n  \"x\": }\n", "c.json");
  ASSERT_FALSE(malformed);
  EXPECT_EQ(malformed.error().str().rfind("c.json:3:8: error: malformed JSON: ", 0), 0u)
      << malformed.error().str();
  auto heads =
      parseHfConfig("{\n  \"hidden_size\": 100,\n  \"num_attention_heads\": 3\n}", "c.json");
  ASSERT_FALSE(heads);
  EXPECT_EQ(heads.error().str(), "c.json:3:26: error: heads (3) must divide width (100)");
  auto type = parseHfConfig("{\"hidden_size\": \"big\"}", "c.json");
  ASSERT_FALSE(type);
  EXPECT_EQ(type.error().str(), "c.json:1:17: error: 'hidden_size' must be an integer");
  auto act = parseHfConfig("{\"hidden_act\": \"relu\"}", "c.json");
  ASSERT_FALSE(act);
  EXPECT_NE(act.error().str().find("unsupported hidden_act \"relu\""), std::string::npos);
  auto notObject = parseHfConfig("[1, 2]", "c.json");
  ASSERT_FALSE(notObject);
  EXPECT_EQ(notObject.error().str(), "c.json:1:1: error: config.json must hold a JSON object");
}

TEST(VitBuilder, EveryVariantVerifies) {
  for (BlockKind block : {BlockKind::Sequential, BlockKind::Parallel})
    for (PoolKind pool : {PoolKind::Token, PoolKind::Gap, PoolKind::Map})
      for (bool qk : {false, true})
        for (bool biases : {false, true})
          for (int64_t classes : {0, 5}) {
            ModelConfig c;
            c.image = 32;
            c.patch = 8;
            c.width = 48;
            c.depth = 2;
            c.mlp = 96;
            c.heads = 3;
            c.block = block;
            c.pool = pool;
            c.qkNorm = qk;
            c.biasQkv = c.biasOut = c.biasMlp = c.biasNorm = biases;
            c.classes = classes;
            auto m = buildVit(c, 2);
            Diagnostics d = ir::verify(*m);
            EXPECT_TRUE(d.empty()) << d.str();
            const ir::Op *out = m->output()->operand(0);
            EXPECT_EQ(out->shape(), (Shape{2, classes ? classes : 48}));
          }
}

} // namespace
} // namespace vitc::frontend
