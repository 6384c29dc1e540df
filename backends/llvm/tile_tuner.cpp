// Choosing matmul tile sizes by measuring them on this host.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "backends/llvm/compiler.h"
#include "support/files.h"

namespace vitc::llvmbe {
namespace {

using Clock = std::chrono::steady_clock;

struct AlignedFloats {
  explicit AlignedFloats(int64_t n)
      : p(static_cast<float *>(
            std::aligned_alloc(64, static_cast<size_t>((n * 4 + 63) / 64 * 64)))) {
    if (!p)
      throw OutOfMemory(n * 4);
    for (int64_t i = 0; i < n; ++i)
      p[i] = static_cast<float>((i * 7919) % 1000) / 1000.0f - 0.5f;
  }
  ~AlignedFloats() { std::free(p); }
  float *p;
};

// Seconds for the ViT-B/16 projection shapes at both token counts with these tiles.
Expected<double> timeTiles(const Target &base, const Tiles &tiles) {
  Options o;
  o.cpu = base.cpu;
  o.features = base.features;
  o.tiles = tiles;
  VITC_ASSIGN(Target target, resolveTarget(o));
  double total = 0;
  for (auto [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{1576, 768, 768},
                         {197, 768, 3072},
                         {1576, 3072, 768}}) {
    VITC_ASSIGN(StandaloneMatmul mm, compileStandaloneMatmul(target, m, n, k));
    AlignedFloats a(m * k), w(n * k), c(m * n), packed(packedFloats(mm.pack)),
        scratch(scratchBytes(mm.matmul) / 4 + 16);
    mm.packWeights(packed.p, w.p, scratch.p);
    double best = 1e9;
    for (int r = 0; r < 4; ++r) {
      auto t0 = Clock::now();
      mm.multiply(c.p, a.p, packed.p, scratch.p);
      best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
    }
    total += best;
  }
  return total;
}

} // namespace

void StandaloneMatmul::packWeights(float *packed, const void *w, float *scratch) const {
  float *args[] = {packed, static_cast<float *>(const_cast<void *>(w))};
  kernels->functions[1](args, 0, workItems(pack), scratch);
}

void StandaloneMatmul::multiply(float *c, const void *a, const float *packed,
                                float *scratch) const {
  float *args[] = {c, static_cast<float *>(const_cast<void *>(a)), const_cast<float *>(packed)};
  kernels->functions[0](args, 0, workItems(matmul), scratch);
}

Expected<StandaloneMatmul> compileStandaloneMatmul(const Target &target, int64_t m, int64_t n,
                                                   int64_t k, bool bf16) {
  StandaloneMatmul s;
  if (bf16 && k % 2 != 0)
    return Error(fmt::format("a bf16 matmul needs an even depth, got {}", k));
  // bf16 descriptions count the depth in pairs (kernel_desc.h).
  int64_t depth = bf16 ? k / 2 : k;
  s.matmul.m = m, s.matmul.n = n, s.matmul.k = depth, s.matmul.bPacked = true;
  s.matmul.bf16 = s.pack.bf16 = bf16;
  s.matmul.tiles = matmulTiles(m, n, depth, target.tiles, 1, bf16);
  s.pack.n = n, s.pack.k = depth, s.pack.transposeB = true, s.pack.nr = target.tiles.nr;
  s.pack.vectorWidth = target.tiles.vectorWidth;
  Plan plan;
  plan.kernels = {s.matmul, s.pack};
  plan.keys = {kernelKey(s.matmul), kernelKey(s.pack)};
  CompileReport report;
  VITC_ASSIGN(s.kernels, compileJit(plan, target, "", report));
  if (bf16 && target.amxBf16)
    VITC_TRY(requestAmxState());
  return s;
}

namespace {

// The tiles a cache file names, or why they cannot be used: every value must be an integer in the
// range the matmul code generator takes (nr whole vectors, at most as many accumulators as fit in
// registers twice over, cache blocks from one tile up to sizes no cache holds).
Expected<Tiles> readCachedTiles(const std::string &text, int64_t vectorWidth) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception &) {
    return Error("it is not valid JSON");
  }
  if (!j.is_object())
    return Error("it is not a JSON object");
  Tiles t;
  constexpr int64_t kMaxBlock = 1 << 16;
  for (auto [key, field, low, high] :
       {std::tuple<const char *, int64_t *, int64_t, int64_t>{"mr", &t.mr, 1, 32},
        {"nr", &t.nr, vectorWidth, 8 * vectorWidth},
        {"kc", &t.kc, 1, kMaxBlock},
        {"mc", &t.mc, 1, kMaxBlock},
        {"nc", &t.nc, 1, kMaxBlock}}) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer())
      return Error(fmt::format("'{}' is missing or not an integer", key));
    *field = it->get<int64_t>();
    if (*field < low || *field > high)
      return Error(fmt::format("{}={} is outside {}..{}", key, *field, low, high));
  }
  if (t.nr % vectorWidth != 0)
    return Error(
        fmt::format("nr={} is not a multiple of the vector width ({})", t.nr, vectorWidth));
  if (t.mc < t.mr || t.nc < t.nr)
    return Error(
        fmt::format("mc={} and nc={} must be at least mr={} and nr={}", t.mc, t.nc, t.mr, t.nr));
  if (t.mr * (t.nr / vectorWidth) > 64)
    return Error(fmt::format("mr={} x nr={} needs more than 64 vector registers", t.mr, t.nr));
  return t;
}

} // namespace

Expected<Tiles> tunedTiles(const Options &options, const std::string &cacheDir, bool retune) {
  VITC_ASSIGN(Target target, resolveTarget(options));
  // The version names the candidates and kernels measured: a change to either measures again.
  std::string cache =
      cacheDir + "/tiles-v2-" + target.cpu + "-" + std::to_string(target.vectorWidth) + ".json";
  std::error_code missing;
  if (!retune && std::filesystem::exists(cache, missing)) {
    // A cache that cannot be used is measured again and overwritten, never an error: it is ours.
    Expected<std::string> text = readFile(cache);
    Expected<Tiles> cached =
        text ? readCachedTiles(*text, target.vectorWidth) : Expected<Tiles>(text.error());
    if (cached)
      return *cached;
    std::cerr << fmt::format("{}: warning: ignoring the tile cache: {}; measuring again\n", cache,
                             cached.error().message());
  }
  // A few register tiles that fill the vector registers, and depth blocks from one L1-sized B
  // panel up to whole ViT widths (the tile then keeps C in registers over the whole depth).
  int64_t vw = target.vectorWidth;
  std::vector<Tiles> candidates =
      vw >= 16 ? std::vector<Tiles>{{8, 48, 768, 160, 768},  {6, 64, 768, 144, 768},
                                    {14, 32, 768, 168, 768}, {12, 32, 768, 168, 768},
                                    {8, 48, 384, 160, 768},  {14, 32, 256, 168, 768}}
               : std::vector<Tiles>{{6, 16, 768, 72, 1024},
                                    {6, 16, 256, 72, 1024},
                                    {4, 24, 768, 64, 1008},
                                    {4, 24, 256, 64, 1008}};
  Tiles best = candidates[0];
  double bestSeconds = 1e9;
  for (const Tiles &t : candidates) {
    Expected<double> measured = Error("");
    try {
      measured = timeTiles(target, t);
    } catch (const OutOfMemory &e) {
      return Error(fmt::format("{} for measuring matmul tile sizes", e.what()));
    }
    VITC_ASSIGN(double s, std::move(measured));
    if (s < bestSeconds) {
      bestSeconds = s;
      best = t;
    }
  }
  nlohmann::json j{{"mr", best.mr}, {"nr", best.nr},     {"kc", best.kc},         {"mc", best.mc},
                   {"nc", best.nc}, {"cpu", target.cpu}, {"seconds", bestSeconds}};
  std::error_code ec;
  std::filesystem::create_directories(cacheDir, ec);
  // Written only as a regular file: a FIFO or device there would be opened and written in place,
  // and a FIFO with no reader would block.
  bool regular = !std::filesystem::exists(cache, ec) || std::filesystem::is_regular_file(cache, ec);
  if (!ec && regular)
    (void)writeFileAtomically(cache, j.dump(2) + "\n"); // a cache: failing to write it is fine
  return best;
}

} // namespace vitc::llvmbe
