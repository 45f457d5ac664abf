// Instruction data (see instruct.h).
#include "engine/data/instruct.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace fathom::data {

using json = nlohmann::json;

namespace {

std::string where(const std::string& path, int64_t line) { return path + ":" + std::to_string(line); }

std::string text_field(const json& obj, const char* key, const std::string& at) {
  if (!obj.contains(key)) throw std::runtime_error(at + ": missing \"" + key + "\"");
  if (!obj[key].is_string()) throw std::runtime_error(at + ": \"" + key + "\" must be a string");
  return obj[key].get<std::string>();
}

}  // namespace

std::vector<InstructExample> read_instruct_jsonl(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error(path + ": cannot open the instruction data file");
  std::vector<InstructExample> out;
  std::string line;
  int64_t n = 0;
  while (std::getline(f, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string at = where(path, n);
    json obj;
    try {
      obj = json::parse(line);
    } catch (const std::exception& e) {
      throw std::runtime_error(at + ": not valid JSON (" + std::string(e.what()) + "); each line must be one JSON object");
    }
    if (!obj.is_object()) throw std::runtime_error(at + ": expected a JSON object per line");
    InstructExample ex;
    ex.source = at;
    if (obj.contains("messages")) {
      if (!obj["messages"].is_array() || obj["messages"].empty())
        throw std::runtime_error(at + ": \"messages\" must be a non-empty array of {\"role\", \"content\"}");
      bool has_assistant = false;
      for (const auto& m : obj["messages"]) {
        if (!m.is_object()) throw std::runtime_error(at + ": each message must be an object with role and content");
        ChatTurn t{text_field(m, "role", at), text_field(m, "content", at)};
        if (t.role != "system" && t.role != "user" && t.role != "assistant")
          throw std::runtime_error(at + ": role '" + t.role + "' is not system, user or assistant");
        has_assistant |= t.role == "assistant";
        ex.turns.push_back(std::move(t));
      }
      if (!has_assistant) throw std::runtime_error(at + ": no assistant message: nothing to learn from this conversation");
    } else if (obj.contains("prompt") || obj.contains("completion")) {
      ex.turns.push_back({"user", text_field(obj, "prompt", at)});
      ex.turns.push_back({"assistant", text_field(obj, "completion", at)});
    } else {
      throw std::runtime_error(at + ": expected {\"prompt\": ..., \"completion\": ...} or {\"messages\": [...]}");
    }
    out.push_back(std::move(ex));
  }
  if (out.empty()) throw std::runtime_error(path + ": no examples (empty file)");
  return out;
}

std::vector<InstructExample> read_instruct_files(const std::vector<std::string>& paths) {
  std::vector<InstructExample> all;
  for (const auto& p : paths) {
    auto part = read_instruct_jsonl(p);
    all.insert(all.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
  }
  return all;
}

std::string resolve_chat_template(const std::string& requested, const std::string& family, const tok::Tokenizer& tokenizer) {
  if (requested != "auto") return requested;
  const bool has_llama3 = tokenizer.token_id("<|start_header_id|>").has_value();
  const bool has_chatml = tokenizer.token_id("<|im_start|>").has_value();
  if (family == "qwen2") return "chatml";
  if (family == "deepseek") return "deepseek";
  if (has_llama3) return "llama3";
  if (has_chatml) return "chatml";
  return "plain";
}

std::vector<Piece> render_example(const InstructExample& ex, const std::string& tmpl, const tok::Tokenizer& tokenizer) {
  std::string eos;
  if (auto id = tokenizer.eos_id()) eos = tokenizer.token_bytes(*id);
  std::vector<Piece> out;
  auto scaffold = [&](std::string s, bool train = false) { out.push_back({std::move(s), true, train}); };
  auto content = [&](std::string s, bool train) { out.push_back({std::move(s), false, train}); };
  if (tmpl == "chatml") {
    // Qwen2 / ChatML: <|im_start|>role\ncontent<|im_end|>\n, the assistant's turn and its
    // <|im_end|> trained.
    for (const auto& t : ex.turns) {
      const bool train = t.role == "assistant";
      scaffold("<|im_start|>" + t.role + "\n");
      content(t.content, train);
      scaffold("<|im_end|>", train);
      scaffold("\n");
    }
  } else if (tmpl == "llama3") {
    scaffold("<|begin_of_text|>");
    for (const auto& t : ex.turns) {
      const bool train = t.role == "assistant";
      scaffold("<|start_header_id|>" + t.role + "<|end_header_id|>\n\n");
      content(t.content, train);
      scaffold("<|eot_id|>", train);
    }
  } else if (tmpl == "deepseek") {
    // DeepSeek chat: "User: ...\n\nAssistant: ...<eos>"
    for (const auto& t : ex.turns) {
      const bool train = t.role == "assistant";
      if (t.role == "system") {
        content(t.content + "\n\n", false);
      } else if (t.role == "user") {
        scaffold("User: ");
        content(t.content + "\n\n", false);
      } else {
        scaffold("Assistant: ");
        content(t.content, true);
        if (!eos.empty()) scaffold(eos, train);
      }
    }
  } else if (tmpl == "plain") {
    // For base models with no chat tokens: an Alpaca-style frame and the end-of-text token.
    for (const auto& t : ex.turns) {
      if (t.role == "system") {
        content(t.content + "\n\n", false);
      } else if (t.role == "user") {
        scaffold("### Instruction:\n");
        content(t.content, false);
        scaffold("\n\n### Response:\n");
      } else {
        content(t.content, true);
        if (!eos.empty()) scaffold(eos, true);
        scaffold("\n\n");
      }
    }
  } else {
    throw std::runtime_error("unknown chat template '" + tmpl + "' (plain, chatml, llama3, deepseek)");
  }
  return out;
}

std::vector<Piece> render_generation_prompt(const std::vector<ChatTurn>& turns, const std::string& tmpl,
                                            const tok::Tokenizer& tokenizer) {
  InstructExample ex;
  ex.turns = turns;
  auto pieces = render_example(ex, tmpl, tokenizer);
  if (tmpl == "chatml") pieces.push_back({"<|im_start|>assistant\n", true, false});
  else if (tmpl == "llama3") pieces.push_back({"<|start_header_id|>assistant<|end_header_id|>\n\n", true, false});
  else if (tmpl == "deepseek") pieces.push_back({"Assistant: ", true, false});
  // plain: a user turn already ends with "### Response:\n".
  return pieces;
}

std::string end_of_turn(const std::string& tmpl) {
  if (tmpl == "chatml") return "<|im_end|>";
  if (tmpl == "llama3") return "<|eot_id|>";
  return "";
}

EncodedExample encode_example(const std::vector<Piece>& pieces, const tok::Tokenizer& tokenizer, int64_t max_tokens) {
  EncodedExample e;
  std::vector<uint32_t> ids;
  for (const auto& p : pieces) {
    ids.clear();
    if (p.special) tokenizer.encode_with_special_append(p.text, ids);
    else tokenizer.encode_append(p.text, ids);
    for (auto id : ids) {
      e.ids.push_back(static_cast<int64_t>(id));
      e.train.push_back(p.train ? 1 : 0);
    }
  }
  e.full_length = static_cast<int64_t>(e.ids.size());
  if (e.full_length > max_tokens) {
    e.ids.resize(static_cast<size_t>(max_tokens));
    e.train.resize(static_cast<size_t>(max_tokens));
    e.truncated = true;
  }
  return e;
}

PackedRows pack_examples(const std::vector<EncodedExample>& examples, int64_t seq_len, bool packing, int64_t pad_id) {
  PackedRows out;
  out.seq_len = seq_len;
  const int64_t width = seq_len + 1;
  std::vector<int64_t> row, seg, pos;
  std::vector<uint8_t> train;
  int64_t next_segment = 0;
  auto flush = [&] {
    if (row.empty()) return;
    while (static_cast<int64_t>(row.size()) < width) {
      row.push_back(pad_id);
      seg.push_back(-1);
      pos.push_back(0);
      train.push_back(0);
    }
    for (int64_t t = 0; t < seq_len; ++t) {
      out.tokens.push_back(row[t]);
      out.segments.push_back(seg[t]);
      out.positions.push_back(pos[t]);
      const bool same = seg[t] >= 0 && seg[t + 1] == seg[t];
      const bool target = same && train[t + 1];
      out.targets.push_back(target ? row[t + 1] : -100);
      out.trained_tokens += target;
    }
    row.clear();
    seg.clear();
    pos.clear();
    train.clear();
    next_segment = 0;
  };
  for (const auto& ex : examples) {
    bool any_trained = false;
    for (size_t i = 1; i < ex.train.size(); ++i) any_trained |= ex.train[i] != 0;
    if (!any_trained) {
      ++out.dropped;  // truncation left no completion token
      continue;
    }
    ++out.examples;
    out.truncated += ex.truncated;
    const int64_t n = static_cast<int64_t>(ex.ids.size());
    if (!packing || static_cast<int64_t>(row.size()) + n > width) flush();
    for (int64_t i = 0; i < n; ++i) {
      row.push_back(ex.ids[static_cast<size_t>(i)]);
      seg.push_back(next_segment);
      pos.push_back(i);
      train.push_back(ex.train[static_cast<size_t>(i)]);
    }
    ++next_segment;
    if (!packing) flush();
  }
  flush();
  return out;
}

}  // namespace fathom::data
