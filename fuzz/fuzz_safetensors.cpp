// libFuzzer target: safetensors files through vitc::fuzz::runSafetensors (fuzz/harness.h).
#include "fuzz/harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vitc::fuzz::runSafetensors(data, size);
  return 0;
}
