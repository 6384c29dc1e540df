// Pass settings: the typed values passes read, and the one table that parses them from text.
//
// Passes never parse text: they read `ctx.options.layout` and its fields. Text comes in through
// the table in pass_options.cpp, from `--pass-option KEY=VALUE`, a layout file (layout.h) or a
// golden test's RUN line, and is parsed and checked once, where it is read: an unknown key, a
// value that is not a number, a number out of range or a word that is not one of the setting's
// choices is a one-line error that names the setting. A pass that needs a new setting adds a
// field to `Layout` (or `PassOptions`) and a line to the table.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "passes/layout.h"
#include "support/error.h"

namespace vitc::passes {

// The optimizer a training step updates its parameters with (passes/optimizer.h); set by
// `vitc train` from its flags and the spec's [train] table.
struct OptimizerOptions {
  enum class Kind { Sgd, AdamW, Adafactor };
  Kind kind = Kind::Sgd;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8; // AdamW
  double weightDecay = 0;                         // decoupled: w -= lr * weight_decay * w
  double clip = 0;                                // global gradient norm; 0: no clipping
  // Adafactor: momentum (0: none), the floor added to squared gradients, and the RMS its update
  // is clipped to.
  double momentum = 0, adafactorEps = 1e-30, updateClip = 1.0;
};
std::string_view optimizerName(OptimizerOptions::Kind kind);
// "sgd", "adamw" or "adafactor"; false for another word.
bool parseOptimizerKind(std::string_view word, OptimizerOptions::Kind &kind);

// Settings that passes read: the layout chosen on the command line or in a layout file.
struct PassOptions {
  Layout layout;
  OptimizerOptions optimizer = {};
  // The element type of matmul inputs: bf16 has convert-bf16 round them (f32 accumulation).
  ir::DType dtype = ir::DType::F32;
  // Where the module's mesh came from (`--mesh`, a layout file, an IR header), for errors about
  // the mesh; unknown (no location) when a test or a tool sets the mesh itself.
  Loc meshLoc = Loc{};
};

// One setting, KEY=VALUE, parsed and checked: kept typed, so that it can be applied to any options
// (a `--pass-option` over the layout file's settings) without being parsed again.
class PassSetting {
public:
  // `key` as `--pass-option` spells it: "layout.microbatches".
  static Expected<PassSetting> parse(std::string_view key, std::string_view value);
  std::string_view key() const;
  // Whether the value is a word (a name or a choice), which a layout file writes as a JSON string.
  bool isWord() const;
  void applyTo(PassOptions &options) const;

  using Value = std::variant<std::string, bool, int64_t, Layout::Activations, ir::DType>;

private:
  PassSetting(size_t index, Value value) : index_(index), value_(std::move(value)) {}
  size_t index_; // into the table of settings
  Value value_;
};

// What the setting `key` accepts, for errors ("an integer from 1 to 1048576"); an error (the
// unknown-key error of `PassSetting::parse`) if no setting is called `key`.
Expected<std::string> describePassSetting(std::string_view key);

// Every setting of `options` as KEY=VALUE text, in the table's order; `PassSetting::parse` reads
// each back to the same value.
std::vector<std::pair<std::string, std::string>> passSettingsOf(const PassOptions &options);

} // namespace vitc::passes
