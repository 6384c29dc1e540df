// Formatting of locations and diagnostics.
#include "support/error.h"

namespace vitc {

std::string Loc::str() const {
  if (!file)
    return "";
  if (line <= 0)
    return *file;
  if (col <= 0)
    return fmt::format("{}:{}", *file, line);
  return fmt::format("{}:{}:{}", *file, line, col);
}

Error::Error(const Loc &loc, std::string message) : loc_(loc), message_(std::move(message)) {}

std::string Error::str() const {
  std::string where = loc_.str();
  if (where.empty())
    return fmt::format("error: {}", message_);
  return fmt::format("{}: error: {}", where, message_);
}

std::string Diagnostics::str() const {
  std::string out;
  for (const Error &e : errors) {
    out += e.str();
    out += '\n';
  }
  return out;
}

} // namespace vitc
