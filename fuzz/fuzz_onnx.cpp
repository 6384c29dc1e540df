// libFuzzer target: ONNX models through vitc::fuzz::runOnnx (fuzz/harness.h).
#include "fuzz/harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vitc::fuzz::runOnnx(data, size);
  return 0;
}
