// The contract between the flow tokenizer and the network: token ids, and a
// grammar that says, at every step of a flow's sequence, which contiguous
// range of ids may come next. The sampler masks everything outside it, so a
// sampled sequence always decodes. Header only, no libtorch.
#ifndef DGC_COMMON_MODEL_GRAMMAR_H_
#define DGC_COMMON_MODEL_GRAMMAR_H_

#include <cstdint>

namespace dgc::model {

using Token = int32_t;

// Ids every vocabulary shares.
constexpr Token kPad = 0;  // padding: never predicted, ignored by the loss
constexpr Token kBos = 1;  // first token of every sequence
constexpr Token kEos = 2;  // last token of every sequence

// A half-open range [begin, end) of token ids.
struct TokenRange {
  Token begin = 0;
  Token end = 0;
  bool Contains(Token t) const { return t >= begin && t < end; }
  int32_t size() const { return end - begin; }
};

// Grammar state of one sequence: a small value type, copied freely. The
// fields mean what the grammar that owns them says.
struct GrammarState {
  int32_t step = 0;      // grammar-defined position
  int32_t a = 0, b = 0, c = 0, d = 0;  // grammar-defined counters
  bool done = false;     // kEos was accepted
};

// A sequence grammar. Thread-compatible: const methods may run in parallel.
class Grammar {
 public:
  virtual ~Grammar() = default;
  virtual int32_t vocab_size() const = 0;
  // The longest sequence the grammar allows, kBos and kEos included.
  virtual int32_t max_length() const = 0;
  // The state right after kBos.
  virtual GrammarState Start() const = 0;
  // Ids allowed next. Never empty while !state.done.
  virtual TokenRange Allowed(const GrammarState& state) const = 0;
  // Consumes `token` (which must be in Allowed(state)); sets state->done
  // after kEos.
  virtual void Advance(GrammarState* state, Token token) const = 0;
};

}  // namespace dgc::model

#endif  // DGC_COMMON_MODEL_GRAMMAR_H_
