// Fuzz harnesses: one function per parser, feeding it arbitrary bytes and checking its promises.
//
// Each `run*` hands `data` to one of vitc's parsers (writing it to an in-memory file first for the
// parsers that take a path) and aborts with a message on a broken promise: a returned error that
// is not one line in compiler style, a module that does not print and parse back to itself, a
// model built from an accepted config that does not verify, a loaded tensor whose shape is not
// the one its header declared. Memory errors, leaks and undefined behaviour are left to the
// sanitizers. The libFuzzer targets in this folder call these functions, and so does the normal
// test suite (tests/fuzz/) on every input kept under tests/fuzz/regressions/.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vitc::fuzz {

void runSpec(const uint8_t *data, size_t size);        // frontend::parseSpec
void runIr(const uint8_t *data, size_t size);          // ir::parseModule, verify, print
void runHfConfig(const uint8_t *data, size_t size);    // frontend::parseHfConfig
void runSafetensors(const uint8_t *data, size_t size); // formats::SafetensorsFile, bindWeights
void runNpy(const uint8_t *data, size_t size);         // formats::parseNpy, readNpy
void runNpz(const uint8_t *data, size_t size);         // formats::NpzFile
void runLayout(const uint8_t *data, size_t size); // passes::readLayoutFile, autotune::parseTarget
void runOnnx(const uint8_t *data, size_t size);   // onnximport::importOnnxBytes, weights

} // namespace vitc::fuzz
