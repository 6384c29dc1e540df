// libFuzzer target: Hugging Face config.json through vitc::fuzz::runHfConfig (fuzz/harness.h).
#include "fuzz/harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vitc::fuzz::runHfConfig(data, size);
  return 0;
}
