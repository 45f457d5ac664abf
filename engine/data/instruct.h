// Instruction-tuning data: JSONL of {"prompt", "completion"} pairs or chat {"messages": [{role,
// content}]}, rendered with a chat template, tokenised with a mask of the tokens the loss is taken
// on (the completions / assistant turns), and packed into rows of seq_len + 1 tokens. Packed
// examples keep their own positions (restarting at 0) and segment ids, so attention and the loss
// never cross from one example into the next.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"

namespace fathom::data {

struct ChatTurn {
  std::string role;  // system | user | assistant
  std::string content;
};

struct InstructExample {
  std::vector<ChatTurn> turns;
  std::string source;  // file:line
};

// Reads every line; errors name file:line and what is wrong (and what is expected).
std::vector<InstructExample> read_instruct_jsonl(const std::string& path);
std::vector<InstructExample> read_instruct_files(const std::vector<std::string>& paths);

// "auto" resolved: qwen2 → chatml; llama → llama3 when the tokenizer has <|start_header_id|>, else
// chatml when it has <|im_start|>, else plain; deepseek → deepseek; others plain.
std::string resolve_chat_template(const std::string& requested, const std::string& family, const tok::Tokenizer& tokenizer);

// A rendered piece of an example: scaffolding (special tokens allowed) or content (encoded as
// plain text, so user text cannot inject special tokens), and whether the loss applies.
struct Piece {
  std::string text;
  bool special = false;
  bool train = false;
};
std::vector<Piece> render_example(const InstructExample& ex, const std::string& chat_template, const tok::Tokenizer& tokenizer);

// A conversation to be continued by the model: the turns rendered as in training, then the
// assistant's header (for plain: the turns already end with "### Response:").
std::vector<Piece> render_generation_prompt(const std::vector<ChatTurn>& turns, const std::string& chat_template,
                                            const tok::Tokenizer& tokenizer);
// The template's end-of-turn token text (<|im_end|>, <|eot_id|>), "" when it ends with end-of-text.
std::string end_of_turn(const std::string& chat_template);

struct EncodedExample {
  std::vector<int64_t> ids;
  std::vector<uint8_t> train;  // per token: the loss applies when predicting it
  int64_t full_length = 0;     // before truncation
  bool truncated = false;
};
EncodedExample encode_example(const std::vector<Piece>& pieces, const tok::Tokenizer& tokenizer, int64_t max_tokens);

// Rows of exactly seq_len + 1 tokens. inputs = row[0..T), targets[t] = row[t+1] when it is in the
// same example and trained, else -100; segments −1 mark padding.
struct PackedRows {
  int64_t seq_len = 0;
  std::vector<int64_t> tokens, targets, segments, positions;  // rows × seq_len each (inputs view)
  int64_t rows() const { return seq_len ? static_cast<int64_t>(tokens.size()) / seq_len : 0; }
  int64_t examples = 0, truncated = 0, dropped = 0, trained_tokens = 0;
};
PackedRows pack_examples(const std::vector<EncodedExample>& examples, int64_t seq_len, bool packing, int64_t pad_id);

}  // namespace fathom::data
