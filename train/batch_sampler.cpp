// BatchSampler: a seeded Fisher-Yates permutation per epoch, and full batches copied out of it.
#include "train/batch_sampler.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <numeric>
#include <random>

#include "train/dataset.h"

namespace vitc::train {
namespace {

// A uniform integer in [0, bound] from `rng`, by rejection: the draws at or above the largest
// multiple of (bound + 1) that fits are redrawn, so that every value is equally likely.
uint64_t uniformUpTo(std::mt19937_64 &rng, uint64_t bound) {
  if (bound == UINT64_MAX)
    return rng();
  uint64_t range = bound + 1;
  uint64_t limit = UINT64_MAX - UINT64_MAX % range; // the largest multiple of range that fits
  uint64_t r;
  do {
    r = rng();
  } while (r >= limit);
  return r % range;
}

} // namespace

BatchSampler::BatchSampler(const Dataset &d, int64_t batch, uint64_t seed, bool shuffle)
    : data_(d), batch_(batch), seed_(seed), shuffle_(shuffle),
      batchesPerEpoch_(batch > 0 ? d.count / batch : 0) {
  assert(batch > 0 && batch <= d.count && "BatchSampler: checkBatchSize first");
}

void BatchSampler::seek(Position p) {
  assert(p.epoch >= 0 && p.batch >= 0 && "BatchSampler::seek: a negative position");
  position_ = {p.epoch + p.batch / batchesPerEpoch_, p.batch % batchesPerEpoch_};
}

std::vector<int64_t> BatchSampler::epochOrder(int64_t epoch) const {
  std::vector<int64_t> order(static_cast<size_t>(data_.count));
  std::iota(order.begin(), order.end(), int64_t(0));
  if (!shuffle_)
    return order;
  auto e = static_cast<uint64_t>(epoch);
  std::seed_seq seq{static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32),
                    static_cast<uint32_t>(e), static_cast<uint32_t>(e >> 32)};
  std::mt19937_64 rng(seq);
  for (size_t i = order.size(); i > 1; --i)
    std::swap(order[i - 1], order[uniformUpTo(rng, i - 1)]);
  return order;
}

void BatchSampler::next(float *images, int32_t *labels) {
  if (orderEpoch_ != position_.epoch) {
    order_ = epochOrder(position_.epoch);
    orderEpoch_ = position_.epoch;
  }
  auto imageSize = static_cast<size_t>(data_.imageSize());
  for (int64_t i = 0; i < batch_; ++i) {
    auto from = static_cast<size_t>(order_[static_cast<size_t>(position_.batch * batch_ + i)]);
    std::memcpy(images + static_cast<size_t>(i) * imageSize, data_.images.data() + from * imageSize,
                imageSize * sizeof(float));
    labels[i] = data_.labels[from];
  }
  if (++position_.batch == batchesPerEpoch_)
    position_ = {position_.epoch + 1, 0};
}

} // namespace vitc::train
