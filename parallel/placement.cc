#include "parallel/placement.h"

#include <stdexcept>

namespace tessera::parallel {

Placement::Placement(Kind kind, int pp, int chunks, int micro_batches)
    : kind_(kind), pp_(pp), chunks_(chunks), micro_batches_(micro_batches) {
  if (pp < 1 || chunks < 1) {
    throw std::invalid_argument("Placement: pp=" + std::to_string(pp) + " and chunks=" +
                                std::to_string(chunks) + " must be >= 1");
  }
  holder_.resize(static_cast<size_t>(pp) * chunks);
  for (int vs = 0; vs < pp * chunks; ++vs) {
    StageChunk& h = holder_[vs];
    switch (kind) {
      case Kind::kLooped: h = {vs % pp, vs / pp}; break;
      case Kind::kVShape: h = vs < pp ? StageChunk{vs, 0} : StageChunk{2 * pp - 1 - vs, 1}; break;
      case Kind::kBidirectional:
        h = vs < pp ? StageChunk{vs, 0} : StageChunk{2 * pp - 1 - vs, 1};
        break;
    }
  }
  vs_of_.assign(pp, std::vector<int>(chunks, -1));
  for (int vs = 0; vs < pp * chunks; ++vs) vs_of_[holder_[vs].stage][holder_[vs].chunk] = vs;
}

Placement Placement::looped(int pp, int chunks) { return {Kind::kLooped, pp, chunks, 0}; }
Placement Placement::v_shape(int pp) { return {Kind::kVShape, pp, 2, 0}; }
Placement Placement::bidirectional(int pp, int micro_batches) {
  if (micro_batches < 2 || micro_batches % 2 != 0) {
    throw std::invalid_argument("Placement::bidirectional: micro_batches=" +
                                std::to_string(micro_batches) + " must be even and >= 2");
  }
  return {Kind::kBidirectional, pp, 2, micro_batches};
}

int Placement::virtual_stage(int stage, int chunk) const {
  return vs_of_.at(static_cast<size_t>(stage)).at(static_cast<size_t>(chunk));
}

int Placement::next(int vs) const {
  const int pos = block(vs);
  return pos + 1 < blocks() ? vs + 1 : -1;
}

int Placement::prev(int vs) const { return block(vs) > 0 ? vs - 1 : -1; }

int Placement::path_of(int micro_batch) const {
  return kind_ == Kind::kBidirectional && micro_batch >= micro_batches_ / 2 ? 1 : 0;
}

std::string Placement::kind_name() const {
  switch (kind_) {
    case Kind::kLooped: return "looped";
    case Kind::kVShape: return "v-shape";
    case Kind::kBidirectional: return "bidirectional";
  }
  return "?";
}

}  // namespace tessera::parallel
