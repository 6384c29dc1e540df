// Executables for tests: the interpreter's without ceremony, and ones whose programs a test
// replaces or wraps (to inject failures and delays into a real run).
#pragma once

#include <functional>
#include <memory>

#include "backends/interpreter/interpreter.h"

namespace vitc::test {

// The interpreter's executable of `m` (compiling for the interpreter cannot fail).
inline std::shared_ptr<const runtime::Executable> interpret(std::shared_ptr<const ir::Module> m) {
  return interp::compile(std::move(m)).take();
}

// `inner`'s signature, with programs made by `make`.
class WrappedExecutable : public runtime::Executable {
public:
  using Make = std::function<Expected<std::unique_ptr<runtime::DeviceProgram>>(
      const runtime::Executable &inner, int64_t device, std::vector<Tensor> params)>;
  WrappedExecutable(std::shared_ptr<const runtime::Executable> inner, Make make)
      : inner_(std::move(inner)), make_(std::move(make)) {}
  const Signature &signature() const override { return inner_->signature(); }
  Expected<std::unique_ptr<runtime::DeviceProgram>>
  instantiate(int64_t device, std::vector<Tensor> params) const override {
    return make_(*inner_, device, std::move(params));
  }

private:
  std::shared_ptr<const runtime::Executable> inner_;
  Make make_;
};

inline std::shared_ptr<const runtime::Executable>
wrap(std::shared_ptr<const runtime::Executable> inner, WrappedExecutable::Make make) {
  return std::make_shared<WrappedExecutable>(std::move(inner), std::move(make));
}

} // namespace vitc::test
