// Parsing IR text back into a module.
#include <cctype>
#include <charconv>
#include <cmath>
#include <unordered_map>

#include "ir/text.h"

namespace vitc::ir {
namespace {

// More devices than any machine has; the limit keeps device counts and ids far from overflow.
constexpr int64_t kMaxDevices = int64_t{1} << 24;

bool isNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
}

class Parser {
public:
  Parser(std::string_view text, const std::string &filename)
      : text_(text), file_(Loc::inFile(filename)) {}

  Expected<std::unique_ptr<Module>> parse() {
    auto m = std::make_unique<Module>();
    VITC_TRY(expectWord("module"));
    VITC_TRY(expectChar('@'));
    VITC_ASSIGN(m->name, name("a module name"));
    skip();
    if (peekWord("mesh")) {
      VITC_TRY(expectWord("mesh"));
      VITC_ASSIGN(m->mesh, mesh());
    }
    skip();
    if (peekWord("attributes")) {
      VITC_TRY(expectWord("attributes"));
      VITC_ASSIGN(m->attrs, attrDict());
    }
    VITC_TRY(expectChar('{'));
    std::unordered_map<std::string, Op *> values;
    while (true) {
      skip();
      if (atEnd())
        return error("expected '}' to close the module");
      if (peek() == '}')
        break;
      VITC_TRY(op(*m, values));
    }
    VITC_TRY(expectChar('}'));
    skip();
    if (!atEnd())
      return error("unexpected text after the module");
    return m;
  }

private:
  // Whitespace and `//` comments.
  void skip() {
    while (!atEnd()) {
      char c = peek();
      if (c == '/' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '/') {
        while (!atEnd() && peek() != '\n')
          advance();
      } else if (std::isspace(static_cast<unsigned char>(c))) {
        advance();
      } else {
        break;
      }
    }
  }
  bool atEnd() const { return pos_ >= text_.size(); }
  char peek() const { return text_[pos_]; }
  void advance() {
    if (text_[pos_] == '\n') {
      ++line_;
      col_ = 1;
    } else {
      ++col_;
    }
    ++pos_;
  }
  Loc here() const { return file_.at(line_, col_); }
  Error error(std::string message) const { return Error(here(), std::move(message)); }

  bool peekWord(std::string_view w) {
    skip();
    if (text_.substr(pos_, w.size()) != w)
      return false;
    size_t after = pos_ + w.size();
    return after >= text_.size() || !isNameChar(text_[after]);
  }
  Status expectWord(std::string_view w) {
    if (!peekWord(w))
      return error(fmt::format("expected '{}'", w));
    for (size_t i = 0; i < w.size(); ++i)
      advance();
    return Status::ok();
  }
  Status expectChar(char c) {
    skip();
    if (atEnd() || peek() != c)
      return error(fmt::format("expected '{}'", c));
    advance();
    return Status::ok();
  }
  bool acceptChar(char c) {
    skip();
    if (atEnd() || peek() != c)
      return false;
    advance();
    return true;
  }
  Expected<std::string> name(std::string_view what) {
    skip();
    size_t start = pos_;
    while (!atEnd() && isNameChar(peek()))
      advance();
    if (pos_ == start)
      return error(fmt::format("expected {}", what));
    return std::string(text_.substr(start, pos_ - start));
  }
  // An identifier for a mesh axis: letters, digits and '_' only (so `@model+1` splits).
  Expected<std::string> axisIdent() {
    skip();
    size_t start = pos_;
    while (!atEnd() && (std::isalnum(static_cast<unsigned char>(peek())) || peek() == '_'))
      advance();
    if (pos_ == start)
      return error("expected a mesh axis name");
    return std::string(text_.substr(start, pos_ - start));
  }
  Expected<int64_t> integer(std::string_view what) {
    skip();
    int64_t v = 0;
    auto [end, ec] = std::from_chars(text_.data() + pos_, text_.data() + text_.size(), v);
    if (ec != std::errc())
      return error(fmt::format("expected {}", what));
    while (text_.data() + pos_ != end)
      advance();
    return v;
  }

  Expected<Mesh> mesh() {
    VITC_TRY(expectChar('('));
    Mesh m;
    if (acceptChar(')'))
      return m;
    int64_t devices = 1;
    do {
      Loc at = (skip(), here());
      VITC_ASSIGN(std::string axis, axisIdent());
      VITC_TRY(expectChar('='));
      VITC_ASSIGN(int64_t size, integer("an axis size"));
      if (size <= 0)
        return Error(at, fmt::format("mesh axis '{}' needs a positive size", axis));
      if (size > kMaxDevices / devices)
        return Error(at, fmt::format("the mesh has more than {} devices", kMaxDevices));
      devices *= size;
      if (m.axisIndex(axis) >= 0)
        return Error(at, fmt::format("mesh axis '{}' appears twice", axis));
      m.axes.push_back({axis, size});
    } while (acceptChar(','));
    VITC_TRY(expectChar(')'));
    if (m.axes.size() > 8)
      return error("a mesh has at most 8 axes");
    return m;
  }

  Expected<AttrValue> attrValue() {
    skip();
    if (atEnd())
      return error("expected an attribute value");
    char c = peek();
    if (c == '"') {
      advance();
      std::string s;
      while (true) {
        if (atEnd() || peek() == '\n')
          return error("unterminated string");
        char ch = peek();
        advance();
        if (ch == '"')
          break;
        if (ch == '\\') {
          if (atEnd())
            return error("unterminated string");
          char esc = peek();
          advance();
          s += esc == 'n' ? '\n' : esc;
          continue;
        }
        s += ch;
      }
      return AttrValue(s);
    }
    if (c == '[') {
      advance();
      std::vector<int64_t> list;
      if (acceptChar(']'))
        return AttrValue(list);
      do {
        VITC_ASSIGN(int64_t v, integer("an integer in the list"));
        list.push_back(v);
      } while (acceptChar(','));
      VITC_TRY(expectChar(']'));
      return AttrValue(list);
    }
    if (peekWord("true") || peekWord("false")) {
      bool v = peekWord("true");
      VITC_TRY(expectWord(v ? "true" : "false"));
      return AttrValue(v);
    }
    // A number: an integer unless it has a '.', an exponent, or is inf/nan.
    size_t start = pos_;
    size_t end = pos_;
    while (end < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[end])) ||
                                  text_[end] == '.' || text_[end] == '-' || text_[end] == '+'))
      ++end;
    std::string_view tok = text_.substr(start, end - start);
    if (tok.empty())
      return error("expected an attribute value");
    bool isFloat = tok.find_first_of(".eEn") != std::string_view::npos;
    AttrValue v;
    if (isFloat) {
      double d = 0;
      auto [p, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), d);
      if (ec != std::errc() || p != tok.data() + tok.size())
        return error(fmt::format("bad number '{}'", tok));
      // NaN equals nothing, so a module holding one could never equal itself parsed again.
      if (std::isnan(d))
        return error(fmt::format("bad number '{}': attributes cannot be NaN", tok));
      v = d;
    } else {
      int64_t i = 0;
      auto [p, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), i);
      if (ec != std::errc() || p != tok.data() + tok.size())
        return error(fmt::format("bad number '{}'", tok));
      v = i;
    }
    while (pos_ < end)
      advance();
    return v;
  }

  Expected<Attrs> attrDict() {
    VITC_TRY(expectChar('{'));
    Attrs attrs;
    if (acceptChar('}'))
      return attrs;
    do {
      Loc at = (skip(), here());
      VITC_ASSIGN(std::string key, name("an attribute name"));
      if (attrs.has(key))
        return Error(at, fmt::format("attribute '{}' appears twice", key));
      VITC_TRY(expectChar('='));
      VITC_ASSIGN(AttrValue value, attrValue());
      attrs.set(key, std::move(value));
    } while (acceptChar(','));
    VITC_TRY(expectChar('}'));
    return attrs;
  }

  Expected<TensorType> type(const Mesh &mesh) {
    skip();
    Loc at = here();
    VITC_ASSIGN(std::string dt, axisIdent());
    auto dtype = parseDType(dt);
    if (!dtype)
      return Error(at, fmt::format("unknown element type '{}'", dt));
    TensorType t;
    t.dtype = *dtype;
    VITC_TRY(expectChar('['));
    skip();
    if (!acceptChar(']')) {
      do {
        Loc dimAt = (skip(), here());
        VITC_ASSIGN(int64_t d, integer("a dimension size"));
        if (d <= 0)
          return Error(dimAt, "dimension sizes must be positive");
        DimSharding ds;
        if (acceptChar('@')) {
          Loc axisAt = here();
          VITC_ASSIGN(std::string axis, axisIdent());
          ds.axis = mesh.axisIndex(axis);
          if (ds.axis < 0)
            return Error(axisAt, fmt::format("unknown mesh axis '{}'", axis));
          if (acceptChar('+')) {
            Loc rotationAt = (skip(), here());
            VITC_ASSIGN(ds.rotation, integer("a rotation"));
            if (ds.rotation < 0) // `@axis+-1` would print as `@axis-1`, which does not parse
              return Error(rotationAt, "a rotation cannot be negative");
          }
        }
        t.shape.push_back(d);
        t.sharding.dims.push_back(ds);
      } while (acceptChar(','));
      VITC_TRY(expectChar(']'));
    }
    for (const char *what : {"partial", "manual"}) {
      if (!peekWord(what))
        continue;
      VITC_TRY(expectWord(what));
      VITC_TRY(expectChar('('));
      uint32_t &bits = what[0] == 'p' ? t.sharding.partial : t.sharding.manual;
      do {
        Loc axisAt = (skip(), here());
        VITC_ASSIGN(std::string axis, axisIdent());
        int a = mesh.axisIndex(axis);
        if (a < 0)
          return Error(axisAt, fmt::format("unknown mesh axis '{}'", axis));
        bits |= 1u << a;
      } while (acceptChar(','));
      VITC_TRY(expectChar(')'));
    }
    return t;
  }

  Status op(Module &m, std::unordered_map<std::string, Op *> &values) {
    skip();
    Loc at = here();
    std::string result;
    if (acceptChar('%')) {
      VITC_ASSIGN(result, name("a value name"));
      if (values.count(result))
        return Error(at, fmt::format("value '%{}' is defined twice", result));
      VITC_TRY(expectChar('='));
    }
    skip();
    Loc kwAt = here();
    VITC_ASSIGN(std::string keyword, name("an op name"));
    auto kind = opKindFromKeyword(keyword);
    if (!kind)
      return Error(kwAt, fmt::format("unknown op '{}'", keyword));
    const OpInfo &info = opInfo(*kind);
    if (info.has(kNoResult) != result.empty())
      return Error(
          at, info.has(kNoResult)
                  ? fmt::format("'{}' defines no value", keyword)
                  : fmt::format("'{}' defines a value: write '%name = {} ...'", keyword, keyword));
    std::vector<Op *> operands;
    skip();
    if (!atEnd() && peek() == '%') {
      do {
        skip();
        Loc useAt = here();
        VITC_TRY(expectChar('%'));
        VITC_ASSIGN(std::string use, name("a value name"));
        auto it = values.find(use);
        if (it == values.end())
          return Error(useAt, fmt::format("use of undefined value '%{}'", use));
        operands.push_back(it->second);
      } while (acceptChar(','));
    }
    Attrs attrs;
    skip();
    if (!atEnd() && peek() == '{') {
      VITC_ASSIGN(attrs, attrDict());
    }
    TensorType t;
    if (!info.has(kNoResult)) {
      VITC_TRY(expectChar(':'));
      VITC_ASSIGN(t, type(m.mesh));
    }
    Op *created = m.create(*kind, std::move(operands), std::move(attrs), std::move(t), result, at);
    if (!result.empty())
      values[result] = created;
    return Status::ok();
  }

  std::string_view text_;
  Loc file_;
  size_t pos_ = 0;
  int line_ = 1;
  int col_ = 1;
};

} // namespace

Expected<std::unique_ptr<Module>> parseModule(std::string_view text, const std::string &filename) {
  return Parser(text, filename).parse();
}

} // namespace vitc::ir
