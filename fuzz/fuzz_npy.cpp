// libFuzzer target: NumPy .npy images through vitc::fuzz::runNpy (fuzz/harness.h).
#include "fuzz/harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vitc::fuzz::runNpy(data, size);
  return 0;
}
