// Control lines (workbench -> engine stdin): round trips, extra fields kept, malformed input.
#include <gtest/gtest.h>

#include "engine/protocol/protocol.h"

using namespace fathom::protocol;
using nlohmann::json;

TEST(Control, EncodesTheDocumentedLines) {
  EXPECT_EQ(encode_control(Control{"stop", "", json::object()}), "{\"op\":\"stop\"}\n");
  EXPECT_EQ(encode_control(Control{"checkpoint", "", json::object()}), "{\"op\":\"checkpoint\"}\n");
  EXPECT_EQ(encode_control(Control{"sample", "Once upon", json::object()}), "{\"op\":\"sample\",\"prompt\":\"Once upon\"}\n");
  EXPECT_EQ(encode_control(Control{"sample", "", json::object()}), "{\"op\":\"sample\",\"prompt\":\"\"}\n");
}

TEST(Control, RoundTripsEveryOpAndKeepsExtraFields) {
  for (const char* op : {control_op::checkpoint, control_op::stop, control_op::sample, control_op::ping}) {
    Control c;
    c.op = op;
    c.prompt = std::string(op) == "sample" ? "Fellow citizens — «ünïcode»\n" : "";
    const std::string line = encode_control(c);
    ASSERT_EQ(line.find('\n'), line.size() - 1);
    std::string err;
    auto back = decode_control(line, &err);
    ASSERT_TRUE(back) << err;
    EXPECT_EQ(back->op, op);
    EXPECT_EQ(back->prompt, c.prompt);
  }
  Control c;
  c.op = "sample";
  c.prompt = "x";
  c.raw = json{{"temperature", 0.7}, {"max_tokens", 64}, {"op", "ignored"}};
  auto back = decode_control(encode_control(c));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->op, "sample");  // op wins over raw
  EXPECT_EQ(back->raw["temperature"], 0.7);
  EXPECT_EQ(back->raw["max_tokens"], 64);
}

TEST(Control, DecodesUnknownOpsForTheEngineToRefuse) {
  auto c = decode_control("{\"op\":\"profile\",\"seconds\":5}\r\n");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->op, "profile");
  EXPECT_EQ(c->raw["seconds"], 5);
  EXPECT_EQ(c->prompt, "");
}

TEST(Control, PromptOfWrongTypeIsIgnored) {
  auto c = decode_control(R"({"op":"sample","prompt":42})");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->prompt, "");
}

TEST(Control, RejectsMalformedWithReason) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "empty"},
      {"stop", "not valid JSON"},
      {"{\"op\":", "not valid JSON"},
      {"[\"stop\"]", "not a JSON object"},
      {"{}", "no \"op\""},
      {"{\"op\":1}", "no \"op\""},
      {"{\"op\":\"\"}", "no \"op\""},
      {std::string("\xff\x00{", 3), "not valid JSON"},
      {"{\"op\":\"stop\",\"x\":" + std::string(1000, '[') + "}", "nested deeper"},
  };
  for (const auto& [line, want] : cases) {
    std::string err;
    std::optional<Control> c;
    ASSERT_NO_THROW(c = decode_control(line, &err)) << line;
    EXPECT_FALSE(c) << line;
    EXPECT_NE(err.find(want), std::string::npos) << line << " -> " << err;
  }
}

TEST(Control, EncodeNeverThrowsOnInvalidUtf8) {
  Control c;
  c.op = "sample";
  c.prompt = "bad \xff";
  std::string line;
  ASSERT_NO_THROW(line = encode_control(c));
  EXPECT_TRUE(decode_control(line));
}
