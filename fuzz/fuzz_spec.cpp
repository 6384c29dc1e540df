// libFuzzer target: vitc spec files (TOML) through vitc::fuzz::runSpec (fuzz/harness.h).
#include "fuzz/harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vitc::fuzz::runSpec(data, size);
  return 0;
}
