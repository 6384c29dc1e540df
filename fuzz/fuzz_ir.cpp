// libFuzzer target: IR text through vitc::fuzz::runIr (fuzz/harness.h).
#include "fuzz/harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vitc::fuzz::runIr(data, size);
  return 0;
}
