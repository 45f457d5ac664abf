// Token shard writer/reader: values, dtypes, atomic commit, truncation and corruption detection.
#include "engine/data/token_shards.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <random>

#include "tokenizer/test_support.h"

using fathom::data::TokenDtype;
using fathom::data::TokenShard;
using fathom::data::TokenShardWriter;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(TokenShards, RoundTripUint16) {
  fathom::test::TempDir dir;
  const std::string path = dir.file("train.bin");
  std::vector<uint32_t> ids;
  std::mt19937 rng(1);
  for (int i = 0; i < 300000; ++i) ids.push_back(rng() % 50257);  // crosses the 1 MiB write buffer
  {
    TokenShardWriter w(path, 50257);
    EXPECT_EQ(w.dtype(), TokenDtype::kUint16);
    w.append(ids.data(), 1000);
    w.append(ids.data() + 1000, ids.size() - 1000);
    EXPECT_FALSE(fathom::test::path_exists(path)) << "visible before commit";
    EXPECT_TRUE(fathom::test::path_exists(path + ".tmp"));
    w.commit();
  }
  EXPECT_FALSE(fathom::test::path_exists(path + ".tmp"));
  TokenShard s(path);
  ASSERT_EQ(s.size(), ids.size());
  EXPECT_EQ(s.dtype(), TokenDtype::kUint16);
  EXPECT_EQ(s.vocab_size(), 50257u);
  EXPECT_EQ(::fathom::test::read_text(path).size(), 64 + 2 * ids.size());
  for (size_t i = 0; i < ids.size(); i += 997) EXPECT_EQ(s[i], ids[i]);
  std::vector<int64_t> out(5000);
  s.copy(12345, out.size(), out.data());
  for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], int64_t(ids[12345 + i]));
}

TEST(TokenShards, Uint32ForLargeVocabularies) {
  fathom::test::TempDir dir;
  const std::string path = dir.file("val.bin");
  const std::vector<uint32_t> ids = {0, 65535, 65536, 151668, 7};
  {
    TokenShardWriter w(path, 151669);
    EXPECT_EQ(w.dtype(), TokenDtype::kUint32);
    w.append(ids);
    w.commit();
  }
  TokenShard s(path);
  EXPECT_EQ(s.dtype(), TokenDtype::kUint32);
  ASSERT_EQ(s.size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(s[i], ids[i]);
  EXPECT_EQ(fathom::data::token_dtype_for_vocab(65535), TokenDtype::kUint16);
  EXPECT_EQ(fathom::data::token_dtype_for_vocab(65536), TokenDtype::kUint32);
}

TEST(TokenShards, UncommittedWriterLeavesNothing) {
  fathom::test::TempDir dir;
  const std::string path = dir.file("train.bin");
  {
    TokenShardWriter w(path, 1000);
    w.append({1, 2, 3});
  }
  EXPECT_FALSE(fathom::test::path_exists(path));
  EXPECT_FALSE(fathom::test::path_exists(path + ".tmp"));
}

TEST(TokenShards, RejectsIdsOutsideTheVocabulary) {
  fathom::test::TempDir dir;
  TokenShardWriter w(dir.file("x.bin"), 100);
  const std::string msg = error_of([&] { w.append({5, 100}); });
  EXPECT_NE(msg.find("100"), std::string::npos) << msg;
}

TEST(TokenShards, EmptyShardIsValid) {
  fathom::test::TempDir dir;
  {
    TokenShardWriter w(dir.file("val.bin"), 300);
    w.commit();
  }
  TokenShard s(dir.file("val.bin"));
  EXPECT_EQ(s.size(), 0u);
  s.copy(0, 0, nullptr);
}

TEST(TokenShards, DetectsTruncationCorruptionAndMissingFiles) {
  fathom::test::TempDir dir;
  const std::string path = dir.file("train.bin");
  {
    TokenShardWriter w(path, 1000);
    std::vector<uint32_t> ids(1000, 42);
    w.append(ids);
    w.commit();
  }
  ASSERT_EQ(::truncate(path.c_str(), 64 + 2 * 999), 0);
  std::string msg = error_of([&] { TokenShard s(path); });
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("prepare"), std::string::npos) << msg;

  fathom::test::write_text(path, std::string(100, 'x'));
  msg = error_of([&] { TokenShard s(path); });
  EXPECT_NE(msg.find("not a token shard"), std::string::npos) << msg;

  fathom::test::write_text(path, "tiny");
  msg = error_of([&] { TokenShard s(path); });
  EXPECT_NE(msg.find("shorter than"), std::string::npos) << msg;

  msg = error_of([&] { TokenShard s(dir.file("missing.bin")); });
  EXPECT_NE(msg.find("missing.bin"), std::string::npos) << msg;
}

TEST(TokenShards, CopyOutOfRangeThrowsAndMoveTransfersTheMapping) {
  fathom::test::TempDir dir;
  {
    TokenShardWriter w(dir.file("t.bin"), 10);
    w.append({1, 2, 3, 4});
    w.commit();
  }
  TokenShard a(dir.file("t.bin"));
  int64_t out[4];
  EXPECT_THROW(a.copy(2, 3, out), std::out_of_range);
  EXPECT_THROW(a.copy(5, 0, out), std::out_of_range);
  TokenShard b = std::move(a);
  EXPECT_FALSE(a.is_open());
  ASSERT_TRUE(b.is_open());
  b.copy(0, 4, out);
  EXPECT_EQ(out[3], 4);
}
