// Whether the tests run under AddressSanitizer, for the tests that must adapt to it.
//
// ASan reserves terabytes of address space when a process starts, so a process under `ulimit -v`
// cannot even begin (memory-limit tests skip), and it slows code several times (complexity tests
// measure smaller sizes). GCC defines __SANITIZE_ADDRESS__; clang answers __has_feature.
#pragma once

namespace vitc::test {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif
#else
inline constexpr bool kAddressSanitizer = false;
#endif

} // namespace vitc::test
