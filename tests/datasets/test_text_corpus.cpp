#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "datasets/byte_vocab.h"
#include "datasets/common.h"
#include "datasets/text_corpus.h"
#include "tests/test_support.h"

namespace pd = perceiver::datasets;
namespace fs = std::filesystem;

namespace {
using perceiver::testing::write_file;


// The embedded corpus must exist on a set-up machine: a missing package is a failure, not a skip.
std::vector<pd::BibleVerse> load_kjv_or_fail() {
  try {
    return pd::read_kjv();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "KJV unavailable (run scripts/setup.sh): " << e.what();
    return {};
  }
}

}  // namespace

TEST(DatasetsTextCorpus, Utf8Validation) {
  EXPECT_TRUE(pd::is_valid_utf8("plain ascii"));
  EXPECT_TRUE(pd::is_valid_utf8("Gr\xC3\xBC\xC3\x9F" "e \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_FALSE(pd::is_valid_utf8("\xC3"));              // truncated
  EXPECT_FALSE(pd::is_valid_utf8("\xC0\xAF"));          // overlong
  EXPECT_FALSE(pd::is_valid_utf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(pd::is_valid_utf8("\xF4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(pd::is_valid_utf8("ab\xFF"));
}

TEST(DatasetsTextCorpus, ReadsDirectoriesSortedAndSkipsInvalidLines) {
  perceiver::testing::TempDir tmp;
  write_file(tmp.path() / "b" / "z.txt", "second file\n");
  write_file(tmp.path() / "a.txt", "first\nbad \xFF\xFE line\nstill first\n");
  write_file(tmp.path() / "b" / "c.jsonl",
             "{\"text\": \"json one\", \"id\": 1}\n{\"other\": \"x\"}\nnot json\n\n{\"text\": \"json two\"}\n");
  write_file(tmp.path() / "ignored.bin", "\x01\x02");
  const auto corpus = pd::read_text(tmp.path());
  EXPECT_EQ(corpus.files, 3);
  ASSERT_EQ(corpus.documents.size(), 4u);
  EXPECT_EQ(corpus.documents[0], "first\nstill first\n");
  EXPECT_EQ(corpus.documents[1], "json one");
  EXPECT_EQ(corpus.documents[2], "json two");
  EXPECT_EQ(corpus.documents[3], "second file\n");
  EXPECT_EQ(corpus.invalid_lines, 3);  // the invalid UTF-8 line, the object without "text", "not json"

  pd::TextReadOptions by_line;
  by_line.unit = pd::TextUnit::kLine;
  const auto lines = pd::read_text(tmp.path() / "a.txt", by_line);
  EXPECT_EQ(lines.documents, (std::vector<std::string>{"first", "still first"}));
  EXPECT_THROW(pd::read_text(tmp.path() / "missing.txt"), std::runtime_error);
}

TEST(DatasetsTextCorpus, ByteWindowsMapBytesToTokenizerIds) {
  const std::vector<std::string> docs = {"hello", "w\xC3\xB6rld!"};
  pd::WindowOptions opt;
  opt.length = 6;  // 4 body bytes + [CLS] + [SEP]
  const auto w = pd::make_byte_windows(docs, opt);
  const std::string stream = "hello\nw\xC3\xB6rld!";  // 13 bytes -> 4 windows, last padded
  ASSERT_EQ(w.sizes(), (std::vector<int64_t>{4, 6}));
  for (int64_t r = 0; r < 4; ++r) {
    EXPECT_EQ(w[r][0].item<int64_t>(), 4);
    const std::string body = stream.substr(r * 4, 4);
    for (size_t k = 0; k < body.size(); ++k)
      EXPECT_EQ(w[r][k + 1].item<int64_t>(), static_cast<unsigned char>(body[k]) + 6);
    EXPECT_EQ(w[r][body.size() + 1].item<int64_t>(), 5);
    for (int64_t k = static_cast<int64_t>(body.size()) + 2; k < 6; ++k) EXPECT_EQ(w[r][k].item<int64_t>(), 0);
  }
  EXPECT_EQ(pd::ids_to_text(w), stream);
  EXPECT_EQ(pd::attention_mask_from_ids(w)[3].sum().item<int64_t>(), 3);  // [CLS] 1 byte [SEP]
  opt.pad_last = false;
  EXPECT_EQ(pd::make_byte_windows(docs, opt).size(0), 3);
  EXPECT_EQ(pd::ids_to_text(pd::text_to_ids("abc")), "abc");
}

TEST(DatasetsTextCorpus, LzwMatchesSystemDecompressor) {
  const fs::path path = pd::kjv_data_path();
  const std::string bytes = pd::read_file_bytes(path);
  auto be32 = [&](size_t off) {
    return (static_cast<uint32_t>(static_cast<unsigned char>(bytes[off])) << 24) |
           (static_cast<uint32_t>(static_cast<unsigned char>(bytes[off + 1])) << 16) |
           (static_cast<uint32_t>(static_cast<unsigned char>(bytes[off + 2])) << 8) |
           static_cast<uint32_t>(static_cast<unsigned char>(bytes[off + 3]));
  };
  const uint32_t windows = be32(88);
  perceiver::testing::TempDir tmp;
  for (const uint32_t w : {0u, windows / 2, windows - 1}) {
    const uint32_t begin = be32(92 + 4 * w), end = be32(96 + 4 * w);
    const std::string codes = bytes.substr(begin, end - begin);
    // Independent reference: gzip decodes compress(1) .Z files (header 1f 9d, 16 bits + block mode).
    write_file(tmp.path() / "w.Z", std::string("\x1f\x9d\x90", 3) + codes);
    const std::string cmd = "gzip -dc '" + (tmp.path() / "w.Z").string() + "' > '" + (tmp.path() / "w").string() + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    EXPECT_EQ(pd::lzw_decompress(codes), pd::read_file_bytes(tmp.path() / "w")) << "window " << w;
  }
}

TEST(DatasetsTextCorpus, KjvParsesVersesAndSplitsDeterministically) {
  const auto verses = load_kjv_or_fail();
  ASSERT_FALSE(verses.empty());
  EXPECT_EQ(verses.size(), 31102u);  // verses in the Authorized Version
  EXPECT_EQ(verses.front().reference, "Ge1:1");
  EXPECT_EQ(verses.front().text, "In the beginning God created the heaven and the earth.");
  EXPECT_EQ(verses.back().reference, "Rev22:21");
  for (const auto& v : verses) ASSERT_TRUE(pd::is_valid_utf8(v.text)) << v.reference;

  const auto a = pd::split_kjv(verses), b = pd::split_kjv(verses);
  EXPECT_EQ(a.train, b.train);
  EXPECT_EQ(a.validation, b.validation);
  EXPECT_EQ(a.train.size() + a.validation.size(), verses.size());
  EXPECT_EQ(a.validation.size(), verses.size() / 20);
  // Held-out verses are exactly every 20th (index % 20 == 19), the rest is train: disjoint by construction.
  for (size_t k = 0; k < a.validation.size(); ++k) ASSERT_EQ(a.validation[k], verses[20 * k + 19].text);
  size_t t = 0;
  for (size_t i = 0; i < verses.size(); ++i)
    if (i % 20 != 19) ASSERT_EQ(a.train[t++], verses[i].text);

  pd::WindowOptions opt;
  opt.length = 512;
  const auto windows = pd::make_byte_windows(a.validation, opt);
  EXPECT_EQ(windows.size(1), 512);
  EXPECT_TRUE(windows.ge(0).all().item<bool>());
  EXPECT_TRUE(windows.lt(pd::byte_vocab::kVocabSize).all().item<bool>());
}
