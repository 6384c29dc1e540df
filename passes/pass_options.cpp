// The table of pass settings, and parsing them from text.
#include "passes/pass_options.h"

#include <cctype>
#include <charconv>
#include <type_traits>

namespace vitc::passes {
namespace {

// Where a setting's value lives; the alternatives are in the order of PassSetting::Value's.
using Field = std::variant<std::string Layout::*, bool Layout::*, int64_t Layout::*,
                           Layout::Activations Layout::*, ir::DType PassOptions::*>;
static_assert(std::variant_size_v<Field> == std::variant_size_v<PassSetting::Value>);

struct SettingSpec {
  std::string_view key;
  Field field;
  int64_t min = 0, max = 0; // integers
};

constexpr int64_t kMaxBytes = int64_t{1} << 50;
constexpr int64_t kMaxMicrobatches = 1 << 20;

// Sorted by key. A string is a mesh axis name.
const SettingSpec kSettings[] = {
    {"dtype", &PassOptions::dtype},
    {"layout.activations", &Layout::activations},
    {"layout.collective-matmul", &Layout::collectiveMatmul},
    {"layout.data-axis", &Layout::dataAxis},
    {"layout.microbatches", &Layout::microbatches, 1, kMaxMicrobatches},
    {"layout.model-axis", &Layout::modelAxis},
    {"layout.params-over-data", &Layout::paramsOverData},
    {"layout.params-over-data-min-bytes", &Layout::paramsOverDataMinBytes, 0, kMaxBytes},
};

constexpr Layout::Activations kActivations[] = {Layout::Activations::Tokens,
                                                Layout::Activations::Replicated};

bool isAxisName(std::string_view s) {
  if (s.empty())
    return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-')
      return false;
  return true;
}

Expected<size_t> findSetting(std::string_view key) {
  for (size_t i = 0; i < std::size(kSettings); ++i)
    if (kSettings[i].key == key)
      return i;
  std::string known;
  for (const SettingSpec &s : kSettings)
    known += (known.empty() ? "" : ", ") + std::string(s.key);
  return makeError(Loc{}, "unknown pass option '{}' (known: {})", key, known);
}

std::string activationChoices() {
  std::string words;
  for (Layout::Activations a : kActivations)
    words += (words.empty() ? "" : " ") + std::string(activationsName(a));
  return words;
}

// The type of the field a setting sets: std::string (a mesh axis name), bool, int64_t or an enum.
template <typename Member> struct FieldTypeOf;
template <typename T, typename Owner> struct FieldTypeOf<T Owner::*> { using type = T; };
template <typename Member> using FieldType = typename FieldTypeOf<Member>::type;

// The field itself: a layout's field lives in options.layout, the others in options.
template <typename T> T &fieldOf(PassOptions &options, T Layout::*member) {
  return options.layout.*member;
}
template <typename T> T &fieldOf(PassOptions &options, T PassOptions::*member) {
  return options.*member;
}
template <typename T> const T &fieldOf(const PassOptions &options, T Layout::*member) {
  return options.layout.*member;
}
template <typename T> const T &fieldOf(const PassOptions &options, T PassOptions::*member) {
  return options.*member;
}

constexpr ir::DType kDTypes[] = {ir::DType::F32, ir::DType::BF16};

// The value of the setting's type that `text` spells, or an error naming the setting.
Expected<PassSetting::Value> parseValue(const SettingSpec &spec, std::string_view text) {
  std::string_view key = spec.key;
  return std::visit(
      [&](auto member) -> Expected<PassSetting::Value> {
        using T = FieldType<decltype(member)>;
        if constexpr (std::is_same_v<T, std::string>) {
          if (!isAxisName(text))
            return makeError(Loc{}, "pass option {}='{}': expected a mesh axis name", key, text);
          return PassSetting::Value(std::string(text));
        } else if constexpr (std::is_same_v<T, bool>) {
          if (text != "true" && text != "false")
            return makeError(Loc{}, "pass option {}='{}': expected true or false", key, text);
          return PassSetting::Value(text == "true");
        } else if constexpr (std::is_same_v<T, int64_t>) {
          int64_t n = 0;
          auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
          if (text.empty() || ec == std::errc::invalid_argument || end != text.data() + text.size())
            return makeError(Loc{}, "pass option {}='{}': expected an integer", key, text);
          if (ec == std::errc::result_out_of_range || n < spec.min || n > spec.max)
            return makeError(Loc{}, "pass option {}={} is out of range: expected {} to {}", key,
                             text, spec.min, spec.max);
          return PassSetting::Value(n);
        } else if constexpr (std::is_same_v<T, ir::DType>) {
          for (ir::DType t : kDTypes)
            if (ir::dtypeName(t) == text)
              return PassSetting::Value(t);
          return makeError(Loc{}, "pass option {}='{}': expected one of: f32 bf16", key, text);
        } else {
          for (Layout::Activations a : kActivations)
            if (activationsName(a) == text)
              return PassSetting::Value(a);
          return makeError(Loc{}, "pass option {}='{}': expected one of: {}", key, text,
                           activationChoices());
        }
      },
      spec.field);
}

} // namespace

Expected<PassSetting> PassSetting::parse(std::string_view key, std::string_view value) {
  VITC_ASSIGN(size_t index, findSetting(key));
  VITC_ASSIGN(Value typed, parseValue(kSettings[index], value));
  return PassSetting(index, std::move(typed));
}

std::string_view PassSetting::key() const { return kSettings[index_].key; }

bool PassSetting::isWord() const {
  return std::holds_alternative<std::string>(value_) ||
         std::holds_alternative<Layout::Activations>(value_) ||
         std::holds_alternative<ir::DType>(value_);
}

void PassSetting::applyTo(PassOptions &options) const {
  std::visit(
      [&](auto member) {
        fieldOf(options, member) = std::get<FieldType<decltype(member)>>(value_);
      },
      kSettings[index_].field);
}

Expected<std::string> describePassSetting(std::string_view key) {
  VITC_ASSIGN(size_t index, findSetting(key));
  const SettingSpec &spec = kSettings[index];
  return std::visit(
      [&](auto member) -> std::string {
        using T = FieldType<decltype(member)>;
        if constexpr (std::is_same_v<T, std::string>)
          return "a mesh axis name";
        else if constexpr (std::is_same_v<T, bool>)
          return "true or false";
        else if constexpr (std::is_same_v<T, int64_t>)
          return fmt::format("an integer from {} to {}", spec.min, spec.max);
        else if constexpr (std::is_same_v<T, ir::DType>)
          return "one of: f32 bf16";
        else
          return "one of: " + activationChoices();
      },
      spec.field);
}

std::vector<std::pair<std::string, std::string>> passSettingsOf(const PassOptions &options) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const SettingSpec &spec : kSettings) {
    std::string text = std::visit(
        [&](auto member) -> std::string {
          const auto &value = fieldOf(options, member);
          using T = FieldType<decltype(member)>;
          if constexpr (std::is_same_v<T, std::string>)
            return value;
          else if constexpr (std::is_same_v<T, bool>)
            return value ? "true" : "false";
          else if constexpr (std::is_same_v<T, int64_t>)
            return std::to_string(value);
          else if constexpr (std::is_same_v<T, ir::DType>)
            return std::string(ir::dtypeName(value));
          else
            return std::string(activationsName(value));
        },
        spec.field);
    out.emplace_back(spec.key, std::move(text));
  }
  return out;
}

} // namespace vitc::passes
