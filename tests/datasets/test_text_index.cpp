// Text corpora indexed on disk and read window by window must give exactly the bytes of the in-memory
// reader (read_text + make_byte_windows), and never read a changed file silently.
#include <gtest/gtest.h>

#include <fstream>

#include "datasets/text_corpus.h"
#include "datasets/text_index.h"
#include "tests/test_support.h"

namespace pd = perceiver::datasets;
namespace fs = std::filesystem;
using perceiver::testing::TempDir;
using perceiver::testing::write_file;

namespace {

// Every awkward case read_text handles: blank and whitespace-only lines, an invalid line inside a
// paragraph, CRLF line ends, no final newline, an empty file, JSONL with bad lines, nested folders.
void write_awkward_corpus(const fs::path& dir) {
  write_file(dir / "a.txt", "first line\nsecond line\n\n   \npara two\nbad \xFF line\npara two cont\n\n\nlast\n");
  write_file(dir / "b.txt", "crlf one\r\ncrlf two\r\n\r\ncrlf three");
  write_file(dir / "c.jsonl",
             "{\"text\": \"json one\", \"id\": 1}\n{\"other\": \"x\"}\nnot json\n\n{\"text\": \"\"}\n"
             "{\"text\": \"json \\u00e9 two\"}\r\n\xFF\xFE\n{\"text\": \"line\\nbreak\"}");
  write_file(dir / "d" / "e.md", "# heading\n\nbody \xC3\xA9 text\n");
  write_file(dir / "d" / "empty.txt", "");
  write_file(dir / "d" / "newline.txt", "\n");
  write_file(dir / "skip.bin", "not read");
}

std::string stream_bytes(const pd::TextStream& s) {
  std::string out(static_cast<size_t>(s.size()), '\0');
  s.read(0, s.size(), out.data());
  return out;
}

pd::TextIndexOptions index_options(const fs::path& cache, pd::TextUnit unit, const std::string& separator) {
  pd::TextIndexOptions o;
  o.read.unit = unit;
  o.separator = separator;
  o.cache_dir = cache;
  return o;
}

}  // namespace

TEST(DatasetsTextIndex, StreamingWindowsEqualTheInMemoryReadersByteForByte) {
  TempDir tmp;
  const auto corpus = tmp.path() / "corpus";
  write_awkward_corpus(corpus);
  for (const auto unit : {pd::TextUnit::kFile, pd::TextUnit::kParagraph, pd::TextUnit::kLine}) {
    for (const std::string separator : {"\n", " || ", ""}) {
      for (const bool jsonl_only : {false, true}) {
        auto o = index_options(tmp.path() / "cache", unit, separator);
        if (jsonl_only) {
          o.read.jsonl = true;
          o.read.extensions = {".jsonl"};
        }
        const auto memory = pd::read_text(corpus, o.read);
        const auto indexed = pd::IndexedText::open(corpus, o);
        const std::string what = "unit " + std::to_string(static_cast<int>(unit)) + ", separator '" + separator +
                                 "', jsonl " + std::to_string(jsonl_only);
        const pd::MemoryTextStream reference(memory.documents, separator);
        EXPECT_EQ(stream_bytes(*indexed), stream_bytes(reference)) << what;
        EXPECT_EQ(indexed->summary().documents, static_cast<int64_t>(memory.documents.size())) << what;
        EXPECT_EQ(indexed->summary().invalid_lines, memory.invalid_lines) << what;
        for (const bool specials : {true, false}) {
          pd::WindowOptions w;
          w.length = 7;
          w.add_cls_sep = specials;
          w.separator = separator;
          const auto expected = pd::make_byte_windows(memory.documents, w);
          const pd::ByteWindowDataset windows(indexed, w);
          ASSERT_EQ(windows.size(), expected.size(0)) << what;
          for (int64_t i = 0; i < windows.size(); ++i) {
            const auto example = windows.get(i);
            ASSERT_TRUE(example.at("input_ids").equal(expected[i])) << what << ", window " << i;
            EXPECT_TRUE(example.at("attention_mask").equal(pd::attention_mask_from_ids(expected[i]))) << what;
          }
        }
      }
    }
  }
}

TEST(DatasetsTextIndex, ACleanFileIsOnePieceWhateverItsLength) {
  TempDir tmp;
  {
    std::ofstream out(tmp.path() / "clean.txt");
    for (int i = 0; i < 20000; ++i) out << "verse " << i << " of a long and clean text\n";
  }
  const auto lines = pd::IndexedText::open(tmp.path() / "clean.txt", index_options(tmp.path() / "c", pd::TextUnit::kLine, "\n"));
  EXPECT_EQ(lines->summary().documents, 20000);
  EXPECT_EQ(lines->summary().pieces, 1);  // LF line ends joined by "\n": the file's bytes are the stream
  // Blank lines between paragraphs are not in the stream: each paragraph is a piece.
  write_file(tmp.path() / "paras.txt", "one\ntwo\n\nthree\n\n\nfour\nfive\n");
  const auto paras = pd::IndexedText::open(tmp.path() / "paras.txt",
                                           index_options(tmp.path() / "c", pd::TextUnit::kParagraph, "\n"));
  EXPECT_EQ(stream_bytes(*paras), "one\ntwo\nthree\nfour\nfive");
  EXPECT_EQ(paras->summary().pieces, 3);
}

TEST(DatasetsTextIndex, IndexIsReusedAndRebuiltWhenTheCorpusChanges) {
  TempDir tmp;
  write_file(tmp.path() / "corpus" / "a.txt", "alpha\nbeta\n");
  const auto o = index_options(tmp.path() / "cache", pd::TextUnit::kLine, "\n");
  EXPECT_TRUE(pd::IndexedText::open(tmp.path() / "corpus", o)->summary().built);
  const auto again = pd::IndexedText::open(tmp.path() / "corpus", o);
  EXPECT_FALSE(again->summary().built);
  EXPECT_EQ(stream_bytes(*again), "alpha\nbeta");
  // Another unit is another index.
  EXPECT_TRUE(pd::IndexedText::open(tmp.path() / "corpus", index_options(tmp.path() / "cache", pd::TextUnit::kFile, "\n"))
                  ->summary()
                  .built);
  // A changed file, an added file and a damaged index are each noticed and re-indexed.
  write_file(tmp.path() / "corpus" / "a.txt", "alpha\nbeta\ngamma\n");
  auto changed = pd::IndexedText::open(tmp.path() / "corpus", o);
  EXPECT_TRUE(changed->summary().built);
  EXPECT_EQ(stream_bytes(*changed), "alpha\nbeta\ngamma");
  write_file(tmp.path() / "corpus" / "b.txt", "delta\n");
  changed = pd::IndexedText::open(tmp.path() / "corpus", o);
  EXPECT_TRUE(changed->summary().built);
  EXPECT_EQ(stream_bytes(*changed), "alpha\nbeta\ngamma\ndelta");
  const auto index_file = changed->summary().index_file;
  fs::resize_file(index_file, fs::file_size(index_file) - 5);
  changed = pd::IndexedText::open(tmp.path() / "corpus", o);
  EXPECT_TRUE(changed->summary().built);
  EXPECT_EQ(stream_bytes(*changed), "alpha\nbeta\ngamma\ndelta");
  // The packed texts of a JSONL corpus are part of the index: losing them means re-indexing.
  write_file(tmp.path() / "j" / "d.jsonl", "{\"text\": \"packed\"}\n");
  auto jo = o;
  jo.read.jsonl = true;
  EXPECT_TRUE(pd::IndexedText::open(tmp.path() / "j", jo)->summary().built);
  for (const auto& e : fs::directory_iterator(tmp.path() / "cache"))
    if (e.path().extension() == ".packed") fs::remove(e.path());
  const auto rebuilt = pd::IndexedText::open(tmp.path() / "j", jo);
  EXPECT_TRUE(rebuilt->summary().built);
  EXPECT_EQ(stream_bytes(*rebuilt), "packed");
}

TEST(DatasetsTextIndex, AFileChangedOrDeletedAfterIndexingIsABadExampleNamingIt) {
  TempDir tmp;
  const auto file = tmp.path() / "a.txt";
  write_file(file, "0123456789\nabcdefghij\n");
  const auto text = pd::IndexedText::open(file, index_options(tmp.path() / "cache", pd::TextUnit::kLine, "\n"));
  pd::WindowOptions w;
  w.length = 8;
  const pd::ByteWindowDataset windows(text, w);
  ASSERT_EQ(windows.size(), 4);
  EXPECT_NO_THROW(windows.get(1));
  auto bad_example = [&](int64_t i) -> std::string {
    try {
      windows.get(i);
    } catch (const pd::BadExample& e) {
      EXPECT_EQ(e.source(), file.string());
      return e.what();
    }
    return "";
  };
  write_file(file, "0123456789\n");  // shrunk
  EXPECT_NE(bad_example(3).find("since it was indexed"), std::string::npos);
  fs::remove(file);
  EXPECT_NE(bad_example(0).find("no longer exists"), std::string::npos);
}

TEST(DatasetsTextIndex, SampledDocumentsAreWholeSeparatedTexts) {
  TempDir tmp;
  {
    std::ofstream out(tmp.path() / "lines.txt");
    for (int i = 0; i < 1000; ++i) out << "document number " << i << "\n";
  }
  const auto text = pd::IndexedText::open(tmp.path() / "lines.txt", index_options(tmp.path() / "c", pd::TextUnit::kLine, "\n"));
  const auto docs = text->sample_documents(10, 200);
  ASSERT_EQ(docs.size(), 10u);
  EXPECT_EQ(docs.front(), "document number 0");
  for (const auto& d : docs) EXPECT_EQ(d.rfind("document number ", 0), 0u) << d;
  // In memory, the documents themselves.
  const pd::MemoryTextStream memory({"a", "b", "c"}, "\n");
  EXPECT_EQ(memory.sample_documents(10, 5), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(memory.sample_documents(2, 5), (std::vector<std::string>{"a", "b"}));
}
