// Formatting of locations and diagnostics.
#include "support/error.h"

#include <algorithm>

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

namespace {

// Messages quote what users wrote (keys, names, a parser's view of the text), which may hold line
// breaks and other control characters; escaping them keeps every error on one line.
std::string escapeControls(std::string message) {
  auto isControl = [](char c) {
    return (static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f;
  };
  if (std::none_of(message.begin(), message.end(), isControl))
    return message;
  std::string out;
  for (char c : message) {
    if (!isControl(c))
      out += c;
    else if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
  }
  return out;
}

} // namespace

Error::Error(const Loc &loc, std::string message)
    : loc_(loc), message_(escapeControls(std::move(message))) {}

std::string Error::str() const {
  // File names are what users (or archives: a zip member's name) chose, line breaks included.
  std::string where = escapeControls(loc_.str());
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
