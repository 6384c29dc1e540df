// Deterministic, seeded shuffling and batching of a Dataset.
//
// Epoch e's order is a permutation drawn from (seed, e) alone: a std::mt19937_64 seeded through a
// std::seed_seq of both (each fully specified by the C++ standard) drives a Fisher-Yates shuffle
// written here, because std::shuffle and std::uniform_int_distribution differ between standard
// libraries. So a run resumed at (epoch, batch) sees exactly the batches the uninterrupted run
// saw, on any platform. Batches are full: the last partial batch of an epoch is dropped (as
// big_vision does), so that every step has the same shape. `shuffle = false` keeps the file order.
#pragma once

#include <cstdint>
#include <vector>

namespace vitc::train {

struct Dataset;

class BatchSampler {
public:
  // `d` must outlive the sampler and hold at least `batch` images (`checkBatchSize`).
  BatchSampler(const Dataset &d, int64_t batch, uint64_t seed, bool shuffle = true);

  int64_t batchesPerEpoch() const { return batchesPerEpoch_; }

  struct Position {
    int64_t epoch = 0, batch = 0; // the next batch to produce
  };
  Position position() const { return position_; }
  // Moves to `p`. A batch past the end of an epoch counts on into the next ones, so that
  // `seek({0, step})` is the position of a global step.
  void seek(Position p);

  // Fills `images` (batch×C×H×W floats) and `labels` (batch ints) with the next batch, advancing
  // the position (and the epoch after the last full batch).
  void next(float *images, int32_t *labels);

  // The order of the images in `epoch`: a permutation of [0, count), or 0..count-1 without
  // shuffling.
  std::vector<int64_t> epochOrder(int64_t epoch) const;

private:
  const Dataset &data_;
  int64_t batch_;
  uint64_t seed_;
  bool shuffle_;
  int64_t batchesPerEpoch_;
  Position position_;
  std::vector<int64_t> order_; // the order of epoch `orderEpoch_`
  int64_t orderEpoch_ = -1;
};

} // namespace vitc::train
