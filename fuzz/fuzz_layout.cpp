// libFuzzer target: layout and autotune target JSON through vitc::fuzz::runLayout (fuzz/harness.h).
#include "fuzz/harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vitc::fuzz::runLayout(data, size);
  return 0;
}
