// safetensors format: byte-exact output against the specification and the reference
// implementation's own test vectors, round trips of every dtype, every validation rule, fuzzing.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "checkpoint/test_util.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/checkpoint/sha256.h"

using namespace fathom::ckpt;
using fathom::test::le64;
using fathom::test::read_file;
using fathom::test::TempDir;
using fathom::test::write_file;

namespace {

std::string f32_bytes(std::initializer_list<float> values) {
  std::string s;
  for (float v : values) s.append(reinterpret_cast<const char*>(&v), 4);
  return s;
}

// Builds a file by hand: prefix + header (space-padded to `pad_to`) + data.
std::string hand_file(const std::string& json, const std::string& data, size_t pad_to = 8) {
  std::string h = json;
  if (pad_to) h.append((pad_to - h.size() % pad_to) % pad_to, ' ');
  return le64(h.size()) + h + data;
}

// Expects both readers to reject `bytes` with `code` and a message naming the file and `needle`.
void expect_rejected(const TempDir& dir, const std::string& bytes, SafetensorsErrc code, const std::string& needle) {
  const std::string path = dir / "bad.safetensors";
  write_file(path, bytes);
  for (int reader = 0; reader < 2; ++reader) {
    SCOPED_TRACE(reader == 0 ? "SafetensorsFile" : "read_header_only");
    try {
      if (reader == 0) {
        SafetensorsFile f(path);
      } else {
        SafetensorsFile::read_header_only(path);
      }
      ADD_FAILURE() << "accepted a malformed file; expected an error containing '" << needle << "'";
    } catch (const SafetensorsError& e) {
      EXPECT_EQ(static_cast<int>(e.code()), static_cast<int>(code)) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << "error does not name the file: " << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "error lacks '" << needle << "': " << e.what();
    }
  }
}

}  // namespace

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 h;  // same digest when fed in pieces
  h.update("a", 1);
  h.update("bc", 2);
  EXPECT_EQ(h.hex_digest(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, FileStreamingMatchesOneShot) {
  TempDir dir;
  std::string big(3 * (1 << 20) + 17, '\0');  // spans several 1 MiB reads
  std::mt19937 rng(1);
  for (auto& c : big) c = static_cast<char>(rng());
  write_file(dir / "f", big);
  uint64_t n = 0;
  EXPECT_EQ(sha256_file(dir / "f", &n), sha256_hex(big.data(), big.size()));
  EXPECT_EQ(n, big.size());
  try {
    sha256_file(dir / "missing");
    ADD_FAILURE() << "hashing a missing file succeeded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
}

TEST(DType, NamesAndSizesFollowTheSpec) {
  const std::pair<const char*, size_t> expected[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8}};
  ASSERT_EQ(all_dtypes().size(), std::size(expected));
  for (size_t i = 0; i < all_dtypes().size(); ++i) {
    const DType d = all_dtypes()[i];
    EXPECT_STREQ(dtype_name(d), expected[i].first);
    EXPECT_EQ(dtype_size(d), expected[i].second);
    DType back;
    ASSERT_TRUE(dtype_from_name(expected[i].first, &back));
    EXPECT_EQ(back, d);
  }
  DType ignored;
  EXPECT_FALSE(dtype_from_name("f32", &ignored));  // names are case-sensitive
  EXPECT_FALSE(dtype_from_name("F128", &ignored));
}

// The reference implementation's test vectors (safetensors/src/tensor.rs: test_serialization,
// test_serialization_forced_alignement, test_empty), spelled out here independently of our writer.
TEST(SafetensorsWriter, MatchesReferenceSerializationByteForByte) {
  TempDir dir;
  const std::string data = f32_bytes({0, 1, 2, 3, 4, 5});
  {
    SafetensorsWriter w;
    w.add("attn.0", DType::DTYPE_F32, {1, 2, 3}, data.data(), data.size());
    w.write(dir / "a.safetensors");
    // 64 header bytes: already a multiple of 8, so no padding.
    const std::string json = R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})";
    ASSERT_EQ(json.size(), 64u);
    EXPECT_EQ(read_file(dir / "a.safetensors"), le64(64) + json + data);
  }
  {
    SafetensorsWriter w;
    w.add("attn0", DType::DTYPE_F32, {1, 1, 2, 3}, data.data(), data.size());
    w.write(dir / "b.safetensors");
    // 65 JSON bytes + 7 spaces: the data starts 8-aligned.
    const std::string json = R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})";
    ASSERT_EQ(json.size(), 65u);
    EXPECT_EQ(read_file(dir / "b.safetensors"), le64(72) + json + std::string(7, ' ') + data);
  }
  {
    SafetensorsWriter w;
    w.write(dir / "empty.safetensors");
    EXPECT_EQ(read_file(dir / "empty.safetensors"), le64(8) + "{}" + std::string(6, ' '));
    w.set_metadata("framework", "pt");
    w.write(dir / "empty_meta.safetensors");
    EXPECT_EQ(read_file(dir / "empty_meta.safetensors"),
              le64(40) + R"({"__metadata__":{"framework":"pt"}})" + std::string(5, ' '));
  }
}

// Files written by Hugging Face's safetensors 0.8.0 (tests/fixtures/safetensors/make_fixtures.py,
// every dtype incl. float8 and unsigned, scalars, zero-size, escaped and non-ASCII names): our
// reader must see exactly the sidecar's tensors, and our writer must reproduce each file byte for
// byte from the same tensors and metadata.
TEST(SafetensorsReference, ReadsAndReproducesHuggingFaceFilesExactly) {
  TempDir dir;
  auto unhex = [](const std::string& h) {
    std::string out(h.size() / 2, '\0');
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>(std::stoi(h.substr(2 * i, 2), nullptr, 16));
    return out;
  };
  for (const char* name : {"hf_all_dtypes", "hf_names", "hf_empty"}) {
    SCOPED_TRACE(name);
    const std::string base = std::string(FATHOM_FIXTURES_DIR) + "/safetensors/" + name;
    const auto side = nlohmann::json::parse(read_file(base + ".json"));
    const std::string reference = read_file(base + ".safetensors");

    SafetensorsFile f(base + ".safetensors");
    EXPECT_EQ(nlohmann::json(f.metadata()), side["metadata"]);
    ASSERT_EQ(f.tensors().size(), side["tensors"].size());
    std::vector<std::string> buffers;
    buffers.reserve(side["tensors"].size());
    SafetensorsWriter w;
    for (auto it = side["tensors"].begin(); it != side["tensors"].end(); ++it) {
      SCOPED_TRACE(it.key());
      ASSERT_TRUE(f.contains(it.key()));
      const TensorInfo& t = f.info(it.key());
      EXPECT_STREQ(dtype_name(t.dtype), it.value()["dtype"].get<std::string>().c_str());
      EXPECT_EQ(t.shape, it.value()["shape"].get<std::vector<int64_t>>());
      buffers.push_back(unhex(it.value()["hex"].get<std::string>()));
      const auto bytes = f.data(t);
      ASSERT_EQ(bytes.size, buffers.back().size());
      EXPECT_EQ(std::memcmp(bytes.data, buffers.back().data(), bytes.size), 0);
      w.add(it.key(), t.dtype, t.shape, buffers.back().data(), buffers.back().size());  // sidecar (name) order
    }
    for (auto it = side["metadata"].begin(); it != side["metadata"].end(); ++it) w.set_metadata(it.key(), it.value());
    w.write(dir / "ours.safetensors");
    EXPECT_EQ(read_file(dir / "ours.safetensors"), reference) << "our writer's bytes differ from the reference's";
  }
}

// A mixed file assembled byte by byte from the specification: tensors sorted by descending
// alignment then name, "__metadata__" first, fields in dtype/shape/data_offsets order.
TEST(SafetensorsWriter, MixedFileMatchesHandBuiltBytes) {
  TempDir dir;
  const int64_t a = -2;                                    // I64 scalar
  const std::string m = f32_bytes({1.5f, -2.f, 0.f, 8.f});  // F32 [2, 2]
  const uint16_t b[2] = {0x3F80, 0xC000};                  // BF16 [2] = {1, -2}
  const uint8_t flag[3] = {1, 0, 1};                       // BOOL [3]
  SafetensorsWriter w;
  w.add("flag", DType::DTYPE_BOOL, {3}, flag, 3);
  w.add("b", DType::DTYPE_BF16, {2}, b, 4);
  w.add("z", DType::DTYPE_U8, {0, 3}, nullptr, 0);  // zero-size: in the header, no bytes
  w.add("m", DType::DTYPE_F32, {2, 2}, m.data(), m.size());
  w.add("a", DType::DTYPE_I64, {}, &a, 8);
  w.set_metadata("format", "pt");
  w.set_metadata("note", "quote \" backslash \\ newline \n unicode \xC3\xA9");
  const WriteResult r = w.write(dir / "mixed.safetensors", WriteOptions{true, true});

  const std::string json =
      R"({"__metadata__":{"format":"pt","note":"quote \" backslash \\ newline \n unicode )"
      "\xC3\xA9"
      R"("},)"
      R"("a":{"dtype":"I64","shape":[],"data_offsets":[0,8]},)"
      R"("m":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]},)"
      R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[24,28]},)"
      R"("z":{"dtype":"U8","shape":[0,3],"data_offsets":[28,28]},)"
      R"("flag":{"dtype":"BOOL","shape":[3],"data_offsets":[28,31]}})";
  std::string data(reinterpret_cast<const char*>(&a), 8);
  data += m;
  data.append(reinterpret_cast<const char*>(b), 4);
  data.append(reinterpret_cast<const char*>(flag), 3);
  const std::string expected = hand_file(json, data);
  const std::string actual = read_file(dir / "mixed.safetensors");
  EXPECT_EQ(actual, expected);
  EXPECT_EQ(r.bytes, expected.size());
  EXPECT_EQ(r.sha256, sha256_hex(expected.data(), expected.size()));

  // And the reader sees what the header says, in file order.
  SafetensorsFile f(dir / "mixed.safetensors");
  ASSERT_EQ(f.tensors().size(), 5u);
  const char* order[] = {"a", "m", "b", "z", "flag"};
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(f.tensors()[i].name, order[i]);
  EXPECT_EQ(f.metadata().at("note"), "quote \" backslash \\ newline \n unicode \xC3\xA9");
  int64_t a_back;
  std::memcpy(&a_back, f.data("a").data, 8);
  EXPECT_EQ(a_back, -2);
  EXPECT_EQ(f.info("a").shape.size(), 0u);
  EXPECT_EQ(f.info("a").numel(), 1u);
  EXPECT_EQ(f.data("z").size, 0u);
  EXPECT_EQ(f.info("z").numel(), 0u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data("m").data), 16), m);
}

TEST(SafetensorsFile, RoundTripsEveryDtypeIncludingScalarsAndZeroSize) {
  TempDir dir;
  std::vector<std::string> buffers;
  buffers.reserve(3 * all_dtypes().size());
  SafetensorsWriter w;
  std::mt19937 rng(7);
  struct Expect {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    size_t buffer;
  };
  std::vector<Expect> expected;
  for (DType d : all_dtypes()) {
    const std::vector<std::vector<int64_t>> shapes = {{2, 3, 5}, {}, {4, 0}};
    const char* kinds[] = {"tensor", "scalar", "empty"};
    for (size_t k = 0; k < shapes.size(); ++k) {
      uint64_t numel = 1;
      for (auto s : shapes[k]) numel *= static_cast<uint64_t>(s);
      std::string bytes(numel * dtype_size(d), '\0');
      for (auto& c : bytes) c = static_cast<char>(rng());
      if (d == DType::DTYPE_BOOL)
        for (auto& c : bytes) c = static_cast<char>(c & 1);
      buffers.push_back(bytes);
      const std::string name = std::string(kinds[k]) + "." + dtype_name(d);
      w.add(name, d, shapes[k], buffers.back().data(), buffers.back().size());
      expected.push_back({name, d, shapes[k], buffers.size() - 1});
    }
  }
  w.set_metadata({{"step", "42"}, {"empty", ""}});
  const WriteResult r = w.write(dir / "all.safetensors");

  SafetensorsFile f(dir / "all.safetensors");
  f.validate();
  EXPECT_EQ(f.header().file_bytes, r.bytes);
  EXPECT_EQ(f.header().data_bytes, r.bytes - f.header().data_start());
  EXPECT_EQ(f.metadata().size(), 2u);
  EXPECT_EQ(f.metadata().at("step"), "42");
  ASSERT_EQ(f.tensors().size(), expected.size());
  uint64_t prev_end = 0;
  for (const auto& t : f.tensors()) {  // sorted by offset, contiguous
    EXPECT_EQ(t.begin, prev_end);
    prev_end = t.end;
  }
  for (const auto& e : expected) {
    SCOPED_TRACE(e.name);
    ASSERT_TRUE(f.contains(e.name));
    const TensorInfo& t = f.info(e.name);
    EXPECT_EQ(t.dtype, e.dtype);
    EXPECT_EQ(t.shape, e.shape);
    const auto bytes = f.data(e.name);
    ASSERT_EQ(bytes.size, buffers[e.buffer].size());
    EXPECT_EQ(std::memcmp(bytes.data, buffers[e.buffer].data(), bytes.size), 0);
    // Writer padding + alignment ordering: each tensor starts aligned to its element size.
    EXPECT_EQ((f.header().data_start() + t.begin) % dtype_size(t.dtype), 0u);
  }
  const SafetensorsHeader h = SafetensorsFile::read_header_only(dir / "all.safetensors");
  ASSERT_EQ(h.tensors.size(), f.tensors().size());
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    EXPECT_EQ(h.tensors[i].name, f.tensors()[i].name);
    EXPECT_EQ(h.tensors[i].begin, f.tensors()[i].begin);
  }
  EXPECT_EQ(h.metadata, f.metadata());
}

TEST(SafetensorsFile, AcceptsWhatTheSpecAllows) {
  TempDir dir;
  const std::string data = f32_bytes({1, 2});
  // Out-of-order keys, unknown extra fields, null metadata, odd whitespace, unpadded header.
  const std::string json =
      R"({ "y" : {"shape":[1],"data_offsets":[4,8],"dtype":"F32","extra":true}, "__metadata__": null,)"
      R"( "x": {"dtype":"F32","shape":[1],"data_offsets":[0,4]} })";
  write_file(dir / "ok.safetensors", hand_file(json, data, 0));
  SafetensorsFile f(dir / "ok.safetensors");
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.tensors()[0].name, "x");  // sorted by offset, not by key
  EXPECT_EQ(f.tensors()[1].name, "y");
  EXPECT_TRUE(f.metadata().empty());
  float y;
  std::memcpy(&y, f.data("y").data, 4);
  EXPECT_EQ(y, 2.f);
  try {
    f.data("nope");
    ADD_FAILURE() << "data() of a missing tensor succeeded";
  } catch (const SafetensorsError& e) {
    EXPECT_EQ(e.code(), SafetensorsErrc::SAFETENSORS_ERRC_NOT_FOUND);
    EXPECT_NE(std::string(e.what()).find("\"nope\""), std::string::npos) << e.what();
  }
}

TEST(SafetensorsFile, RejectsEveryMalformedHeaderWithAClearError) {
  using E = SafetensorsErrc;
  TempDir dir;
  const std::string d8 = f32_bytes({1, 2});
  const std::string one = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

  expect_rejected(dir, "", E::SAFETENSORS_ERRC_HEADER_TOO_SMALL, "shorter than the 8-byte");
  expect_rejected(dir, "1234567", E::SAFETENSORS_ERRC_HEADER_TOO_SMALL, "7 bytes");
  expect_rejected(dir, le64(100'000'001) + "{}", E::SAFETENSORS_ERRC_HEADER_TOO_LARGE, "100 MB");
  expect_rejected(dir, le64(~0ull) + "{}", E::SAFETENSORS_ERRC_HEADER_TOO_LARGE, "100 MB");
  expect_rejected(dir, le64(64) + "{}", E::SAFETENSORS_ERRC_HEADER_LENGTH, "only 2 bytes follow");
  expect_rejected(dir, le64(0), E::SAFETENSORS_ERRC_HEADER_START, "empty header");
  expect_rejected(dir, hand_file(" " + one, d8, 0), E::SAFETENSORS_ERRC_HEADER_START, "must begin with '{'");
  expect_rejected(dir, hand_file("[1,2]", ""), E::SAFETENSORS_ERRC_HEADER_START, "0x5b");
  expect_rejected(dir, hand_file("{\"a\xff\":1}", ""), E::SAFETENSORS_ERRC_HEADER_UTF8, "not valid UTF-8 at header byte 3");
  expect_rejected(dir, hand_file("{\"\xC0\xAF\":1}", ""), E::SAFETENSORS_ERRC_HEADER_UTF8, "UTF-8");  // overlong '/'
  expect_rejected(dir, hand_file("{\"\xED\xA0\x80\":1}", ""), E::SAFETENSORS_ERRC_HEADER_UTF8, "UTF-8");  // surrogate
  expect_rejected(dir, hand_file(R"({"a":{"dtype":"F32")", ""), E::SAFETENSORS_ERRC_HEADER_JSON, "not valid JSON");
  {  // NUL padding is not JSON whitespace (only spaces are allowed)
    std::string f = le64(8) + "{}" + std::string(6, '\0');
    expect_rejected(dir, f, E::SAFETENSORS_ERRC_HEADER_JSON, "not valid JSON");
  }
  expect_rejected(dir,
                  hand_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                            R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                            d8),
                  E::SAFETENSORS_ERRC_HEADER_JSON, "\"a\" appears twice");
  expect_rejected(dir, hand_file(R"({"a":{"dtype":"F32","dtype":"I32","shape":[2],"data_offsets":[0,8]}})", d8),
                  E::SAFETENSORS_ERRC_HEADER_JSON, "\"dtype\" appears twice");
  expect_rejected(dir, hand_file(R"({"a":7})", ""), E::SAFETENSORS_ERRC_HEADER_SCHEMA, "tensor \"a\" must map to");
  expect_rejected(dir, hand_file(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", d8),
                  E::SAFETENSORS_ERRC_HEADER_SCHEMA, "no string \"dtype\"");
  expect_rejected(dir, hand_file(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", d8),
                  E::SAFETENSORS_ERRC_HEADER_SCHEMA, "no \"shape\" array");
  expect_rejected(dir, hand_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d8),
                  E::SAFETENSORS_ERRC_HEADER_SCHEMA, "non-negative integer");
  expect_rejected(dir, hand_file(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", d8),
                  E::SAFETENSORS_ERRC_HEADER_SCHEMA, "non-negative integer");
  expect_rejected(dir, hand_file(R"({"a":{"dtype":"F32","shape":[2]}})", d8), E::SAFETENSORS_ERRC_HEADER_SCHEMA,
                  "it has none");
  expect_rejected(dir, hand_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}})", d8),
                  E::SAFETENSORS_ERRC_HEADER_SCHEMA, "[0,4,8]");
  expect_rejected(dir, hand_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,-8]}})", d8),
                  E::SAFETENSORS_ERRC_HEADER_SCHEMA, "two non-negative integers");
  expect_rejected(dir, hand_file(R"({"a":{"dtype":"F128","shape":[2],"data_offsets":[0,8]}})", d8),
                  E::SAFETENSORS_ERRC_DTYPE, "unsupported dtype \"F128\"");
  expect_rejected(dir, hand_file(R"({"a":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", d8),
                  E::SAFETENSORS_ERRC_DTYPE, "supported: BOOL, U8");
  expect_rejected(dir, hand_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", d8),
                  E::SAFETENSORS_ERRC_OFFSETS, "end before begin");
  expect_rejected(dir, hand_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8),
                  E::SAFETENSORS_ERRC_OFFSETS, "bytes [0, 4) of the data buffer covered by no tensor");
  expect_rejected(dir,
                  hand_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                            R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                            d8 + f32_bytes({3})),
                  E::SAFETENSORS_ERRC_OFFSETS, "bytes [4, 8)");
  expect_rejected(dir,
                  hand_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                            d8),
                  E::SAFETENSORS_ERRC_OFFSETS, "overlaps tensor \"a\"");
  expect_rejected(dir, hand_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8),
                  E::SAFETENSORS_ERRC_TENSOR_SIZE, "needs 12 bytes");
  expect_rejected(dir,
                  hand_file(R"({"a":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,8]}})", d8),
                  E::SAFETENSORS_ERRC_OVERFLOW, "overflows 64 bits");
  expect_rejected(dir, hand_file(R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})", d8),
                  E::SAFETENSORS_ERRC_OVERFLOW, "byte size that overflows");
  expect_rejected(dir, hand_file(R"({"a":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]}})", d8),
                  E::SAFETENSORS_ERRC_OVERFLOW, "above 2^63-1");
  expect_rejected(dir, hand_file(one, d8 + "xyz"), E::SAFETENSORS_ERRC_INCOMPLETE_BUFFER,
                  "3 bytes after the last tensor");
  expect_rejected(dir, hand_file(one, d8.substr(0, 5)), E::SAFETENSORS_ERRC_INCOMPLETE_BUFFER, "file is truncated");
  expect_rejected(dir, hand_file(R"({"__metadata__":{"k":1}})", ""), E::SAFETENSORS_ERRC_HEADER_SCHEMA,
                  "strings only");
  expect_rejected(dir, hand_file(R"({"__metadata__":["k"]})", ""), E::SAFETENSORS_ERRC_HEADER_SCHEMA,
                  "must be an object of string values");

  // A directory and a missing file are I/O errors that name the path.
  try {
    SafetensorsFile f(dir.path());
    ADD_FAILURE();
  } catch (const SafetensorsError& e) {
    EXPECT_EQ(e.code(), E::SAFETENSORS_ERRC_IO);
    EXPECT_NE(std::string(e.what()).find("is a directory"), std::string::npos) << e.what();
  }
  try {
    SafetensorsFile::read_header_only(dir / "missing.safetensors");
    ADD_FAILURE();
  } catch (const SafetensorsError& e) {
    EXPECT_EQ(e.code(), E::SAFETENSORS_ERRC_IO);
    EXPECT_NE(std::string(e.what()).find("missing.safetensors"), std::string::npos) << e.what();
  }
}

// Random damage to a valid file must give either a valid file or a SafetensorsError, never a
// crash, a hang or another exception type (run under ASan to catch silent overreads).
TEST(SafetensorsFile, SurvivesRandomCorruption) {
  TempDir dir;
  std::vector<float> v(40);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  const int64_t idx[3] = {1, 2, 3};
  SafetensorsWriter w;
  w.add("w", DType::DTYPE_F32, {5, 8}, v.data(), v.size() * 4);
  w.add("i", DType::DTYPE_I64, {3}, idx, sizeof idx);
  w.set_metadata("k", "v");
  w.write(dir / "good.safetensors");
  const std::string good = read_file(dir / "good.safetensors");
  const size_t header_end = 8 + SafetensorsFile::read_header_only(dir / "good.safetensors").header_bytes;

  std::mt19937 rng(12345);
  const std::string path = dir / "fuzz.safetensors";
  int accepted = 0, rejected = 0;
  for (int iter = 0; iter < 600; ++iter) {
    std::string bytes = good;
    switch (iter % 4) {
      case 0:  // flip bytes anywhere in prefix + header
        for (int k = 0; k < 1 + static_cast<int>(rng() % 3); ++k) bytes[rng() % header_end] ^= static_cast<char>(1 + rng() % 255);
        break;
      case 1:  // truncate
        bytes.resize(rng() % bytes.size());
        break;
      case 2:  // replace a header character with a structural one
        bytes[8 + rng() % (header_end - 8)] = "{}[]\",:0-9 e."[rng() % 13];
        break;
      case 3:  // random length prefix
        bytes.replace(0, 8, le64(rng() % (good.size() + 16)));
        break;
    }
    write_file(path, bytes);
    try {
      SafetensorsFile f(path);
      for (const auto& t : f.tensors()) {
        const auto b = f.data(t);
        volatile uint8_t sink = 0;
        for (uint64_t k = 0; k < b.size; ++k) sink = sink ^ b.data[k];  // touch every byte
        (void)sink;
      }
      ++accepted;
    } catch (const SafetensorsError&) {
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "iteration " << iter << " threw a non-SafetensorsError: " << e.what();
    }
  }
  EXPECT_GT(rejected, 400);  // most damage must be caught
  RecordProperty("accepted", accepted);
}

// A 4 GiB sparse file: the header-only read (and mapping) must not touch the data.
TEST(SafetensorsFile, HeaderOnlyReadOfAHugeFileIsFast) {
  TempDir dir;
  const uint64_t n = 1ull << 30;  // F32 elements = 4 GiB
  const std::string json =
      R"({"__metadata__":{"format":"pt"},"huge":{"dtype":"F32","shape":[1073741824],"data_offsets":[0,4294967296]}})";
  const std::string head = hand_file(json, "");
  const std::string path = dir / "huge.safetensors";
  write_file(path, head);
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(head.size() + 4 * n)), 0);

  const auto t0 = std::chrono::steady_clock::now();
  SafetensorsHeader h;
  for (int i = 0; i < 10; ++i) h = SafetensorsFile::read_header_only(path);
  const double per_read_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / 10;
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.tensors[0].nbytes(), 4 * n);
  EXPECT_EQ(h.file_bytes, head.size() + 4 * n);
  EXPECT_EQ(h.data_bytes, 4 * n);
  EXPECT_LT(per_read_ms, 50.0) << "header-only read took " << per_read_ms << " ms";

  const auto t1 = std::chrono::steady_clock::now();
  SafetensorsFile f(path);
  const double open_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
  EXPECT_EQ(f.data("huge").size, 4 * n);
  EXPECT_LT(open_ms, 200.0) << "mapping took " << open_ms << " ms";
}

TEST(SafetensorsWriter, RejectsMisuseWithClearErrors) {
  using E = SafetensorsErrc;
  TempDir dir;
  const float x[2] = {1, 2};
  SafetensorsWriter w;
  auto expect = [](auto fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "accepted; expected '" << needle << "'";
    } catch (const SafetensorsError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect([&] { w.add("a", DType::DTYPE_F32, {3}, x, 8); }, "needs 12 bytes but 8 were given");
  expect([&] { w.add("a", DType::DTYPE_F32, {-1}, x, 8); }, "invalid shape [-1]");
  expect([&] { w.add("__metadata__", DType::DTYPE_F32, {2}, x, 8); }, "reserved");
  expect([&] { w.add("a", DType::DTYPE_F32, {2}, nullptr, 8); }, "null data pointer");
  expect([&] { w.add("bad\xff", DType::DTYPE_F32, {2}, x, 8); }, "not valid UTF-8");
  w.add("a", DType::DTYPE_F32, {2}, x, 8);
  expect([&] { w.add("a", DType::DTYPE_F32, {2}, x, 8); }, "added twice");
  expect([&] { w.write(dir / "no/such/dir/x.safetensors"); }, "no/such/dir/x.safetensors");
  try {
    w.write(dir / "no/such/dir/x.safetensors");
  } catch (const SafetensorsError& e) {
    EXPECT_EQ(e.code(), E::SAFETENSORS_ERRC_IO);
  }

  // A streamed producer that emits the wrong amount fails and leaves no file behind.
  SafetensorsWriter s;
  s.add_streamed("p", DType::DTYPE_F32, {2}, 8, [&](const SafetensorsWriter::Emit& emit) { emit(x, 4); });
  expect([&] { s.write(dir / "short.safetensors"); }, "emitted 4 bytes, declared 8");
  EXPECT_FALSE(fathom::test::exists(dir / "short.safetensors"));
  SafetensorsWriter ok;
  ok.add_streamed("p", DType::DTYPE_F32, {2}, 8, [&](const SafetensorsWriter::Emit& emit) {
    emit(x, 4);
    emit(x + 1, 4);
  });
  ok.write(dir / "streamed.safetensors");
  SafetensorsFile f(dir / "streamed.safetensors");
  EXPECT_EQ(std::memcmp(f.data("p").data, x, 8), 0);
}
