// IR text of a long chain of ops, for the tests that time the parser and the passes on it.
#pragma once

#include <cstdint>
#include <string>

namespace vitc::test {

// A module of `n` gelu ops, each reading the one before.
inline std::string geluChainIr(int64_t n) {
  std::string text = "module @chain mesh(data=1, model=1) {\n"
                     "  %x = input {name = \"x\"} : f32[2,3]\n";
  std::string previous = "x";
  for (int64_t i = 0; i < n; ++i) {
    std::string name = "a" + std::to_string(i);
    text += "  %" + name + " = gelu %" + previous + " : f32[2,3]\n";
    previous = name;
  }
  return text + "  output %" + previous + "\n}\n";
}

} // namespace vitc::test
