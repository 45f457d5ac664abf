// Reading GPT-2 (encoder.json + vocab.bpe) and Hugging Face tokenizer.json files, and writing
// tokenizer.json. Supported tokenizer.json subset: model BPE over a full byte-level alphabet;
// normalizer none or NFC; pre-tokenizer ByteLevel (GPT-2 regex) or Sequence[Split(Qwen2 or
// Llama 3 regex, Isolated), ByteLevel(use_regex=false)]; decoder ByteLevel. Everything else is
// refused with an error naming the component. The post_processor is not applied (encode() never
// adds BOS/EOS); callers add them explicitly.
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/tokenizer_internal.h"
#include "engine/tokenizer/unicode.h"

namespace fathom::tok {
namespace {

using json = nlohmann::json;

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_dir(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw TokenizerError(path + ": cannot open " + what + " (" + std::strerror(errno) +
                         "); check the path");
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json parse_json(const std::string& path, const char* what) {
  const std::string text = read_file(path, what);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    // e.byte is 1-based; turn it into line:column for the user.
    size_t line = 1, col = 1;
    for (size_t i = 0; i + 1 < e.byte && i < text.size(); ++i) {
      if (text[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    throw TokenizerError(path + ":" + std::to_string(line) + ":" + std::to_string(col) +
                         ": not valid JSON (" + e.what() + "); is the " + what +
                         " complete (not truncated by a failed download)?");
  } catch (const json::exception& e) {  // out_of_range.406: a number beyond double (1e999)
    throw TokenizerError(path + ": cannot read the " + std::string(what) + " (" + e.what() + ")");
  }
}

std::string snippet(const json& j) {
  std::string s = j.dump();
  if (s.size() > 200) s = s.substr(0, 200) + "...";
  return s;
}

std::string bytes_or_fail(const std::string& where, std::string_view spelled) {
  auto raw = byte_level_to_bytes(spelled);
  if (!raw) {
    throw TokenizerError(where + ": token '" + std::string(spelled) +
                         "' has characters outside the byte-level alphabet; this is not a "
                         "byte-level BPE vocabulary");
  }
  return std::move(*raw);
}

// "eos_token" of a tokenizer_config.json: a string or {"content": ...}.
std::optional<std::string> config_eos(const std::string& config_path) {
  if (!is_file(config_path)) return std::nullopt;
  const json cfg = parse_json(config_path, "tokenizer_config.json");
  if (!cfg.is_object() || !cfg.contains("eos_token")) return std::nullopt;
  const json& e = cfg["eos_token"];
  if (e.is_string()) return e.get<std::string>();
  if (e.is_object() && e.contains("content") && e["content"].is_string()) {
    return e["content"].get<std::string>();
  }
  return std::nullopt;
}

bool json_bool(const json& obj, const char* key, bool fallback) {
  auto it = obj.find(key);
  return (it != obj.end() && it->is_boolean()) ? it->get<bool>() : fallback;
}

std::string json_type(const json& obj) {
  auto it = obj.find("type");
  return (it != obj.end() && it->is_string()) ? it->get<std::string>() : std::string("?");
}

// A token id from JSON (already checked to be an unsigned number). get<uint32_t>() would wrap ids
// of 2^32 and above onto small ones; anything past 2^31 is refused here, the builder checks the rest.
uint32_t token_id_of(const json& v, const std::string& where, const std::string& what) {
  const uint64_t id = v.get<uint64_t>();
  if (id >= (uint64_t{1} << 31)) {
    throw TokenizerError(where + ": " + what + " has id " + std::to_string(id) +
                         ", too large for a token id (ids count up from 0 to the vocabulary size)");
  }
  return static_cast<uint32_t>(id);
}

void parse_normalizer(const std::string& where, const json& n, TokenizerParts& parts) {
  if (n.is_null()) return;
  const std::string type = json_type(n);
  if (type == "NFC") {
    parts.nfc = true;
    return;
  }
  if (type == "Sequence" && n.contains("normalizers") && n["normalizers"].is_array()) {
    for (const json& sub : n["normalizers"]) parse_normalizer(where, sub, parts);
    return;
  }
  throw TokenizerError(where + ": normalizer '" + type + "' is not supported (only NFC or none): " +
                       snippet(n));
}

void parse_pretokenizer(const std::string& where, const json& p, TokenizerParts& parts) {
  const std::string unsupported =
      ": pre_tokenizer is not supported; supported are ByteLevel (GPT-2 regex) and "
      "Sequence[Split(Qwen2 or Llama 3 regex, Isolated), ByteLevel(use_regex=false)]: ";
  if (p.is_null()) {
    throw TokenizerError(where + ": pre_tokenizer is null; byte-level BPE needs a ByteLevel "
                                 "pre-tokenizer (sentencepiece-style tokenizers are not supported)");
  }
  const std::string type = json_type(p);
  if (type == "ByteLevel") {
    if (!json_bool(p, "use_regex", true)) {
      throw TokenizerError(where + ": ByteLevel pre_tokenizer without a regex (use_regex=false) "
                                   "and without a Split before it is not supported");
    }
    parts.pretokenizer = PreTokenizerKind::kGpt2;
    parts.add_prefix_space = json_bool(p, "add_prefix_space", false);
    return;
  }
  if (type == "Sequence" && p.contains("pretokenizers") && p["pretokenizers"].is_array() &&
      p["pretokenizers"].size() == 2) {
    const json& split = p["pretokenizers"][0];
    const json& bl = p["pretokenizers"][1];
    if (json_type(split) == "Split" && json_type(bl) == "ByteLevel") {
      const json* regex = nullptr;
      if (split.contains("pattern") && split["pattern"].is_object() &&
          split["pattern"].contains("Regex") && split["pattern"]["Regex"].is_string()) {
        regex = &split["pattern"]["Regex"];
      }
      const std::string behavior = split.value("behavior", std::string("Isolated"));
      if (regex == nullptr || behavior != "Isolated" || json_bool(split, "invert", false) ||
          json_bool(bl, "use_regex", true)) {
        throw TokenizerError(where + unsupported + snippet(p));
      }
      const auto kind = pretokenizer_from_regex(regex->get<std::string>());
      if (!kind) {
        throw TokenizerError(where + ": the Split pre_tokenizer regex " + regex->dump() +
                             " is not implemented; implemented are the GPT-2, Qwen2/Qwen3 and "
                             "Llama 3 patterns");
      }
      parts.pretokenizer = *kind;
      parts.add_prefix_space = json_bool(bl, "add_prefix_space", false);
      return;
    }
  }
  throw TokenizerError(where + unsupported + snippet(p));
}

void write_file_atomically(const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      throw TokenizerError(tmp + ": cannot create (" + std::string(std::strerror(errno)) +
                           "); does the directory exist and is it writable?");
    }
    out.write(data.data(), std::streamsize(data.size()));
    out.flush();
    if (!out) {
      throw TokenizerError(tmp + ": write failed (" + std::string(std::strerror(errno)) +
                           "); is the disk full?");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string err = std::strerror(errno);
    std::remove(tmp.c_str());
    throw TokenizerError(path + ": cannot rename " + tmp + " into place (" + err + ")");
  }
}

std::string js(std::string_view s) {
  // Contents of added tokens may be arbitrary bytes; replace rather than throw on bad UTF-8.
  return json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
const std::array<uint32_t, 256>& byte_to_unicode() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t n = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      t[b] = printable ? b : 256 + n++;
    }
    return t;
  }();
  return table;
}

std::string bytes_to_byte_level(std::string_view bytes) {
  const auto& table = byte_to_unicode();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) unicode::append_utf8(out, table[static_cast<uint8_t>(c)]);
  return out;
}

std::optional<std::string> byte_level_to_bytes(std::string_view text) {
  static const std::array<int16_t, 324> inverse = [] {
    std::array<int16_t, 324> inv;
    inv.fill(-1);
    const auto& t = byte_to_unicode();
    for (int b = 0; b < 256; ++b) inv[t[size_t(b)]] = int16_t(b);
    return inv;
  }();
  std::string out;
  out.reserve(text.size());
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    const unicode::Char c = unicode::decode_utf8(p, end);
    if (!c.valid || c.cp >= inverse.size() || inverse[c.cp] < 0) return std::nullopt;
    out.push_back(char(inverse[c.cp]));
    p += c.len;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
Tokenizer Tokenizer::load(const std::string& path) {
  if (is_dir(path)) {
    const std::string hf = join_path(path, "tokenizer.json");
    if (is_file(hf)) return load_hf(hf);
    const std::string enc = join_path(path, "encoder.json");
    const std::string bpe = join_path(path, "vocab.bpe");
    if (is_file(enc) && is_file(bpe)) return load_gpt2(enc, bpe);
    throw TokenizerError(path + ": no tokenizer here; expected tokenizer.json (Hugging Face) or "
                                "encoder.json + vocab.bpe (GPT-2)");
  }
  if (is_file(path)) {
    const std::string name = path.substr(path.find_last_of('/') + 1);
    if (name == "encoder.json" || name == "vocab.bpe") {
      const std::string dir = parent_dir(path);
      return load_gpt2(join_path(dir, "encoder.json"), join_path(dir, "vocab.bpe"));
    }
    return load_hf(path);
  }
  throw TokenizerError(path + ": no such file or directory; give a tokenizer.json, or a directory "
                              "holding tokenizer.json or encoder.json + vocab.bpe");
}

Tokenizer Tokenizer::load_gpt2(const std::string& encoder_json, const std::string& vocab_bpe) {
  const json enc = parse_json(encoder_json, "GPT-2 encoder.json");
  if (!enc.is_object() || enc.empty()) {
    throw TokenizerError(encoder_json + ": expected a JSON object mapping tokens to ids");
  }
  TokenizerParts parts;
  parts.kind = "gpt2";
  parts.source = encoder_json;
  parts.pretokenizer = PreTokenizerKind::kGpt2;
  std::unordered_map<std::string, uint32_t> spelled_ids;
  spelled_ids.reserve(enc.size());
  for (auto it = enc.begin(); it != enc.end(); ++it) {
    if (!it.value().is_number_unsigned()) {
      throw TokenizerError(encoder_json + ": the id of token '" + it.key() +
                           "' is not a non-negative integer");
    }
    const auto id = token_id_of(it.value(), encoder_json, "token '" + it.key() + "'");
    spelled_ids.emplace(it.key(), id);
    if (it.key() == "<|endoftext|>") {
      parts.added.push_back(AddedToken{id, it.key(), true, false, false, false, false});
    }
    parts.vocab.emplace_back(id, bytes_or_fail(encoder_json, it.key()));
  }
  const std::string text = read_file(vocab_bpe, "GPT-2 vocab.bpe");
  size_t line_no = 0, pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string_view line(text.data() + pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    const size_t sp = line.find(' ');
    if (sp == std::string_view::npos || sp == 0 || sp + 1 == line.size() ||
        line.find(' ', sp + 1) != std::string_view::npos) {
      throw TokenizerError(vocab_bpe + ":" + std::to_string(line_no) +
                           ": expected two tokens separated by one space, got '" +
                           std::string(line) + "'");
    }
    auto a = spelled_ids.find(std::string(line.substr(0, sp)));
    auto b = spelled_ids.find(std::string(line.substr(sp + 1)));
    if (a == spelled_ids.end() || b == spelled_ids.end()) {
      throw TokenizerError(vocab_bpe + ":" + std::to_string(line_no) + ": merge '" +
                           std::string(line) + "' uses a token missing from " + encoder_json +
                           "; are the two files from the same tokenizer?");
    }
    parts.merges.emplace_back(a->second, b->second);
  }
  if (parts.merges.empty()) throw TokenizerError(vocab_bpe + ": no merges found");
  parts.eos_token = "<|endoftext|>";
  return TokenizerBuilder::build(std::move(parts));
}

Tokenizer Tokenizer::load_hf(const std::string& tokenizer_json) {
  const std::string& where = tokenizer_json;
  const json doc = parse_json(tokenizer_json, "tokenizer.json");
  if (!doc.is_object() || !doc.contains("model") || !doc["model"].is_object()) {
    throw TokenizerError(where + ": no \"model\" object; is this a Hugging Face tokenizer.json?");
  }
  const json& model = doc["model"];
  const std::string type = json_type(model);
  if (type != "BPE" && !(type == "?" && model.contains("merges"))) {
    throw TokenizerError(where + ": model type '" + type +
                         "' is not supported; only byte-level BPE models are");
  }
  auto non_empty_string = [&](const char* key) {
    auto it = model.find(key);
    return it != model.end() && it->is_string() && !it->get<std::string>().empty();
  };
  if (non_empty_string("continuing_subword_prefix") || non_empty_string("end_of_word_suffix")) {
    throw TokenizerError(where + ": BPE with continuing_subword_prefix/end_of_word_suffix is not "
                                 "supported (not a byte-level BPE)");
  }
  if (json_bool(model, "byte_fallback", false)) {
    throw TokenizerError(where + ": BPE with byte_fallback (sentencepiece style, e.g. Llama 2 or "
                                 "Mistral) is not supported; only byte-level BPE is");
  }
  if (!model.contains("vocab") || !model["vocab"].is_object() || !model.contains("merges") ||
      !model["merges"].is_array()) {
    throw TokenizerError(where + ": model.vocab (object) or model.merges (array) is missing");
  }

  TokenizerParts parts;
  parts.kind = "hf";
  parts.source = tokenizer_json;
  parts.ignore_merges = json_bool(model, "ignore_merges", false);
  parse_normalizer(where, doc.value("normalizer", json()), parts);
  parse_pretokenizer(where, doc.value("pre_tokenizer", json()), parts);
  const json decoder = doc.value("decoder", json());
  if (!decoder.is_null() && json_type(decoder) != "ByteLevel") {
    throw TokenizerError(where + ": decoder '" + json_type(decoder) +
                         "' is not supported; byte-level BPE uses the ByteLevel decoder");
  }

  const json& vocab = model["vocab"];
  std::unordered_map<std::string, uint32_t> spelled_ids;
  spelled_ids.reserve(vocab.size());
  parts.vocab.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_unsigned()) {
      throw TokenizerError(where + ": model.vocab id of '" + it.key() + "' is not an integer >= 0");
    }
    const auto id = token_id_of(it.value(), where, "model.vocab token '" + it.key() + "'");
    spelled_ids.emplace(it.key(), id);
    parts.vocab.emplace_back(id, bytes_or_fail(where, it.key()));
  }
  const json& merges = model["merges"];
  parts.merges.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const json& m = merges[r];
    std::string a, b;
    if (m.is_string()) {  // "a b" (tokenizers < 0.20)
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        throw TokenizerError(where + ": model.merges[" + std::to_string(r) + "] '" + s +
                             "' is not two tokens separated by one space");
      }
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();  // ["a", "b"] (tokenizers >= 0.20)
      b = m[1].get<std::string>();
    } else {
      throw TokenizerError(where + ": model.merges[" + std::to_string(r) + "] is " + snippet(m) +
                           ", expected \"a b\" or [\"a\", \"b\"]");
    }
    auto ia = spelled_ids.find(a), ib = spelled_ids.find(b);
    if (ia == spelled_ids.end() || ib == spelled_ids.end()) {
      throw TokenizerError(where + ": model.merges[" + std::to_string(r) + "] '" + a + " " + b +
                           "' uses a token that is not in model.vocab");
    }
    parts.merges.emplace_back(ia->second, ib->second);
  }

  if (doc.contains("added_tokens") && doc["added_tokens"].is_array()) {
    for (const json& t : doc["added_tokens"]) {
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_unsigned() ||
          !t.contains("content") || !t["content"].is_string()) {
        throw TokenizerError(where + ": added_tokens entry " + snippet(t) +
                             " lacks an integer id or a string content");
      }
      AddedToken a;
      a.id = token_id_of(t["id"], where, "added token " + snippet(t["content"]));
      a.content = t["content"].get<std::string>();
      a.special = json_bool(t, "special", false);
      a.lstrip = json_bool(t, "lstrip", false);
      a.rstrip = json_bool(t, "rstrip", false);
      a.single_word = json_bool(t, "single_word", false);
      a.normalized = json_bool(t, "normalized", !a.special);
      parts.added.push_back(std::move(a));
    }
  }
  // Our own files carry {"fathom": {"kind": "bpe", "eos_token": ...}}; tokenizers 0.23 refuses unknown top-level keys, so the HF export (engine/checkpoint/hf_export.cpp) strips it.
  if (doc.contains("fathom") && doc["fathom"].is_object()) {
    const json& f = doc["fathom"];
    if (f.value("kind", std::string()) == "bpe") parts.kind = "bpe";
    if (f.contains("eos_token") && f["eos_token"].is_string()) {
      parts.eos_token = f["eos_token"].get<std::string>();
    }
  }
  if (auto eos = config_eos(join_path(parent_dir(tokenizer_json), "tokenizer_config.json"))) {
    parts.eos_token = *eos;
  }
  return TokenizerBuilder::build(std::move(parts));
}

// ---------------------------------------------------------------------------------------------
void Tokenizer::save(const std::string& path) const {
  const TokenizerParts p = TokenizerBuilder::parts_of(*this);
  // Written by hand rather than through nlohmann's ordered_json, which is quadratic in the
  // number of keys; vocab is emitted in id order, as Hugging Face does.
  std::string out;
  out.reserve(p.vocab.size() * 24 + p.merges.size() * 24 + 4096);
  out += "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n";
  out += "  \"added_tokens\": [";
  for (size_t i = 0; i < p.added.size(); ++i) {
    const AddedToken& t = p.added[i];
    auto b = [](bool v) { return v ? "true" : "false"; };
    out += i ? ",\n    {" : "\n    {";
    out += "\"id\": " + std::to_string(t.id) + ", \"content\": " + js(t.content) +
           ", \"single_word\": " + b(t.single_word) + ", \"lstrip\": " + b(t.lstrip) +
           ", \"rstrip\": " + b(t.rstrip) + ", \"normalized\": " + b(t.normalized) +
           ", \"special\": " + b(t.special) + "}";
  }
  out += p.added.empty() ? "],\n" : "\n  ],\n";
  out += std::string("  \"normalizer\": ") + (p.nfc ? "{\"type\": \"NFC\"}" : "null") + ",\n";
  const std::string aps = p.add_prefix_space ? "true" : "false";
  if (p.pretokenizer == PreTokenizerKind::kGpt2) {
    out += "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": " + aps +
           ", \"trim_offsets\": true, \"use_regex\": true},\n";
  } else {
    out += "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
           "\"pattern\": {\"Regex\": " + js(pretokenizer_regex(p.pretokenizer)) +
           "}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", "
           "\"add_prefix_space\": " + aps + ", \"trim_offsets\": false, \"use_regex\": false}]},\n";
  }
  out += "  \"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": " + aps +
         ", \"trim_offsets\": false, \"use_regex\": true},\n";
  out += "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": " + aps +
         ", \"trim_offsets\": true, \"use_regex\": true},\n";
  out += "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
         "    \"continuing_subword_prefix\": \"\",\n    \"end_of_word_suffix\": \"\",\n"
         "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n";
  out += std::string("    \"ignore_merges\": ") + (p.ignore_merges ? "true" : "false") + ",\n";
  out += "    \"vocab\": {";
  std::vector<std::string> spelled(p.vocab.size());
  std::unordered_map<uint32_t, size_t> index_of;
  for (size_t i = 0; i < p.vocab.size(); ++i) {
    spelled[i] = bytes_to_byte_level(p.vocab[i].second);
    index_of[p.vocab[i].first] = i;
    out += i ? ",\n      " : "\n      ";
    out += js(spelled[i]) + ": " + std::to_string(p.vocab[i].first);
  }
  out += "\n    },\n    \"merges\": [";
  // "a b" strings: readable by every tokenizers version (byte-level tokens never hold a space).
  for (size_t r = 0; r < p.merges.size(); ++r) {
    out += r ? ",\n      " : "\n      ";
    out += js(spelled[index_of.at(p.merges[r].first)] + " " + spelled[index_of.at(p.merges[r].second)]);
  }
  out += "\n    ]\n  }";
  if (p.kind == "bpe") {
    out += ",\n  \"fathom\": {\"kind\": \"bpe\"";
    if (p.eos_token) out += ", \"eos_token\": " + js(*p.eos_token);
    out += "}";
  }
  out += "\n}\n";
  write_file_atomically(path, out);
}

}  // namespace fathom::tok
