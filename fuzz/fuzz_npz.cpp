// libFuzzer target: NumPy .npz archives through vitc::fuzz::runNpz (fuzz/harness.h).
#include "fuzz/harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vitc::fuzz::runNpz(data, size);
  return 0;
}
