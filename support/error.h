// Errors for user mistakes: a location, a message, and a value-or-error type.
//
// vitc reports bad input (a malformed spec, a lying weights file, a mesh that does not divide the
// model) as a returned `Error` that carries `file:line:col` and a compiler-style message. Internal
// bugs are asserts, never Errors. Only the driver turns an Error into an exit code.
#pragma once

#include <cassert>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <fmt/format.h>

namespace vitc {

// A place in a user's file. `file` is shared so that thousands of ops can point at one name.
struct Loc {
  std::shared_ptr<const std::string> file;
  int line = 0; // 1-based; 0 means "the whole file"
  int col = 0;  // 1-based; 0 means "the whole line"

  static Loc inFile(std::string path) {
    return Loc{std::make_shared<const std::string>(std::move(path)), 0, 0};
  }
  Loc at(int l, int c) const { return Loc{file, l, c}; }
  bool known() const { return file != nullptr; }
  // "file:line:col", "file:line", "file" or "" depending on what is known.
  std::string str() const;
};

// One diagnostic, already formatted as `file:line:col: error: message`.
class Error {
public:
  Error() = default;
  Error(const Loc &loc, std::string message);
  explicit Error(std::string message) : Error(Loc{}, std::move(message)) {}

  const std::string &message() const { return message_; }
  const Loc &loc() const { return loc_; }
  // The one-line form the driver prints.
  std::string str() const;

private:
  Loc loc_;
  std::string message_;
};

template <typename... Args>
Error makeError(const Loc &loc, fmt::format_string<Args...> f, Args &&...args) {
  return Error(loc, fmt::format(f, std::forward<Args>(args)...));
}

// A value or an Error. Small on purpose: `if (!e) return e.error();` and `*e` are all it offers.
template <typename T> class [[nodiscard]] Expected {
public:
  Expected(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  Expected(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

  explicit operator bool() const { return v_.index() == 0; }
  T &operator*() {
    assert(*this && "dereferencing an Expected that holds an error");
    return std::get<0>(v_);
  }
  const T &operator*() const {
    assert(*this && "dereferencing an Expected that holds an error");
    return std::get<0>(v_);
  }
  T *operator->() { return &**this; }
  const T *operator->() const { return &**this; }
  const Error &error() const {
    assert(!*this && "asking an Expected that holds a value for its error");
    return std::get<1>(v_);
  }
  T take() { return std::move(**this); }

private:
  std::variant<T, Error> v_;
};

// Success or an Error, for functions that return nothing else.
class [[nodiscard]] Status {
public:
  Status() = default;
  Status(Error error) : error_(std::move(error)) {}
  static Status ok() { return Status(); }
  explicit operator bool() const { return !error_.has_value(); }
  const Error &error() const {
    assert(error_ && "asking a successful Status for its error");
    return *error_;
  }

private:
  std::optional<Error> error_;
};

// Several diagnostics at once, as the verifier reports them.
struct Diagnostics {
  std::vector<Error> errors;
  bool empty() const { return errors.empty(); }
  void add(Error e) { errors.push_back(std::move(e)); }
  // All messages, one per line.
  std::string str() const;
};

} // namespace vitc

// Propagates an error out of the enclosing function: `VITC_TRY(status)`.
#define VITC_TRY(expr)                                                                             \
  do {                                                                                             \
    auto vitc_try_result_ = (expr);                                                                \
    if (!vitc_try_result_)                                                                         \
      return vitc_try_result_.error();                                                             \
  } while (0)

// Binds the value of an Expected or returns its error: `VITC_ASSIGN(auto x, parse(...))`.
#define VITC_ASSIGN_CONCAT_(a, b) a##b
#define VITC_ASSIGN_NAME_(line) VITC_ASSIGN_CONCAT_(vitc_assign_, line)
#define VITC_ASSIGN(decl, expr) VITC_ASSIGN_IMPL_(decl, expr, VITC_ASSIGN_NAME_(__LINE__))
#define VITC_ASSIGN_IMPL_(decl, expr, tmp)                                                         \
  auto tmp = (expr);                                                                               \
  if (!tmp)                                                                                        \
    return tmp.error();                                                                            \
  decl = tmp.take()
