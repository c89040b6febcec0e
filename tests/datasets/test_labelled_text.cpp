#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <set>

#include "datasets/common.h"
#include "datasets/fortunes.h"
#include "datasets/labelled_text.h"
#include "datasets/labelled_text_index.h"
#include "datasets/loader.h"
#include "tests/test_support.h"

namespace pd = perceiver::datasets;
namespace fs = std::filesystem;

namespace {
using perceiver::testing::write_file;
}  // namespace

TEST(DatasetsLabelledText, CsvQuotingAndSortedLabelMaps) {
  const auto rows = pd::parse_delimited("a,b\r\n\"x, \"\"y\"\"\",\"multi\nline\"\n,\n", ',');
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(rows[1], (std::vector<std::string>{"x, \"y\"", "multi\nline"}));
  EXPECT_EQ(rows[2], (std::vector<std::string>{"", ""}));
  EXPECT_THROW(pd::parse_delimited("a,\"open\n", ','), std::runtime_error);

  perceiver::testing::TempDir tmp;
  write_file(tmp.path() / "d.csv",
             "id,text,label\n1,\"Hello, world\",pos\n2,bad \xFF,neg\n3,\"It said \"\"no\"\"\",neg\n4,short\n5,fine,zeta\n");
  const auto csv = pd::read_labelled_text(tmp.path() / "d.csv");
  EXPECT_EQ(csv.id2label, (std::vector<std::string>{"neg", "pos", "zeta"}));
  EXPECT_EQ(csv.label2id.at("pos"), 1);
  EXPECT_EQ(csv.texts, (std::vector<std::string>{"Hello, world", "It said \"no\"", "fine"}));
  EXPECT_EQ(csv.labels, (std::vector<int64_t>{1, 0, 2}));
  EXPECT_EQ(csv.skipped, 2);  // invalid UTF-8, missing column
  EXPECT_EQ(csv.label_counts(), (std::vector<int64_t>{1, 1, 1}));

  write_file(tmp.path() / "d.tsv", "label\tsentence\nb\tone\ta\na\ttwo\n");
  pd::LabelledReadOptions tsv_opt;
  tsv_opt.text_field = "sentence";
  const auto tsv = pd::read_labelled_text(tmp.path() / "d.tsv", tsv_opt);
  EXPECT_EQ(tsv.texts, (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(tsv.labels, (std::vector<int64_t>{1, 0}));

  write_file(tmp.path() / "d.jsonl", "{\"t\": \"x\", \"y\": 3}\n{\"t\": \"z\"}\n{broken\n{\"t\": \"w\", \"y\": 1}\n");
  pd::LabelledReadOptions json_opt;
  json_opt.text_field = "t";
  json_opt.label_field = "y";
  const auto jl = pd::read_labelled_text(tmp.path() / "d.jsonl", json_opt);
  EXPECT_EQ(jl.id2label, (std::vector<std::string>{"1", "3"}));
  EXPECT_EQ(jl.labels, (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(jl.skipped, 2);

  pd::LabelledReadOptions bad;
  bad.text_field = "nope";
  try {
    pd::read_labelled_text(tmp.path() / "d.csv", bad);
    FAIL() << "expected an error for a missing column";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
  }
}

TEST(DatasetsLabelledText, MultiLabelAndRegressionTargets) {
  perceiver::testing::TempDir tmp;
  // JSONL label lists are joined with the separator; floats are kept as JSON writes them.
  write_file(tmp.path() / "m.jsonl",
             "{\"text\": \"a\", \"label\": [\"sports\", \"news\"]}\n{\"text\": \"b\", \"label\": \"news\"}\n"
             "{\"text\": \"c\", \"label\": [[1]]}\n{\"text\": \"d\", \"label\": 2.5}\n");
  const auto m = pd::read_labelled_text(tmp.path() / "m.jsonl");
  EXPECT_EQ(m.label_names, (std::vector<std::string>{"sports|news", "news", "2.5"}));
  EXPECT_EQ(m.skipped, 1);  // a nested list is not a label

  const auto t = pd::multi_label_targets({"sports|news", " news ", "weather||"}, "|", "train.csv");
  EXPECT_EQ(t.id2label, (std::vector<std::string>{"news", "sports", "weather"}));
  EXPECT_TRUE(torch::equal(t.targets, torch::tensor({1.f, 1.f, 0.f, 1.f, 0.f, 0.f, 0.f, 0.f, 1.f}).view({3, 3})));
  // Evaluation data is scored against the training labels.
  const auto e = pd::multi_label_targets({"weather"}, "|", "eval.csv", t.id2label);
  EXPECT_TRUE(torch::equal(e.targets, torch::tensor({0.f, 0.f, 1.f}).view({1, 3})));
  EXPECT_EQ(perceiver::testing::error_of([&] { pd::multi_label_targets({"news", "sport"}, "|", "eval.csv", t.id2label); }),
            "eval.csv: row 2: label 'sport' is not among the training labels");

  EXPECT_TRUE(torch::allclose(pd::regression_targets({"1.5", "-2", "3e-1 "}, "r.csv"), torch::tensor({1.5f, -2.f, 0.3f})));
  EXPECT_EQ(perceiver::testing::error_of([&] { pd::regression_targets({"1", "2x"}, "r.csv"); }),
            "r.csv: row 2: regression label '2x' is not a finite number");
  EXPECT_EQ(perceiver::testing::error_of([&] { pd::regression_targets({"nan"}, "r.csv"); }),
            "r.csv: row 1: regression label 'nan' is not a finite number");
}

TEST(DatasetsLabelledText, FortuneEntriesAndSentenceSplitting) {
  const auto entries = pd::parse_fortune_entries("first line\nsecond\n%\n\n%\nthird\n\t\t-- Someone\n%\n");
  EXPECT_EQ(entries, (std::vector<std::string>{"first line\nsecond", "third\n\t\t-- Someone"}));

  // Attributions (indented "--" lines and their indented continuation at the end) are dropped;
  // dialogue at column 0 and indented "--" lines followed by prose are kept.
  EXPECT_EQ(pd::strip_fortune_attribution("third\n\t\t-- Someone"), "third");
  EXPECT_EQ(pd::strip_fortune_attribution("Body.\n    -- Kirk, \"Title\",\n       stardate 1.5\n"), "Body.");
  EXPECT_EQ(pd::strip_fortune_attribution("-- Mama?\n-- Yes."), "-- Mama?\n-- Yes.");
  EXPECT_EQ(pd::strip_fortune_attribution("A\n  -- quoted\nmore prose"), "A\n  -- quoted\nmore prose");
  EXPECT_EQ(pd::strip_fortune_attribution("\t-- Only an attribution"), "");

  const std::string text = "One sentence here.  Another one follows!\nA third, quite a bit longer, sentence?  End";
  const auto pieces = pd::split_sentences(text, 40, 1);
  std::string joined;
  for (const auto& p : pieces) {
    EXPECT_LE(p.size(), 40u);
    joined += (joined.empty() ? "" : " ") + p;
  }
  EXPECT_EQ(joined, "One sentence here. Another one follows! A third, quite a bit longer, sentence? End");
  // Pieces under min_bytes are dropped ("End").
  EXPECT_EQ(pd::split_sentences(text, 40, 5).back(), "A third, quite a bit longer, sentence?");
  // Long runs without spaces are cut on UTF-8 character boundaries.
  std::string cyr;
  for (int i = 0; i < 30; ++i) cyr += "\xD0\xB6";  // ж
  for (const auto& p : pd::split_sentences(cyr, 9, 1)) EXPECT_TRUE(pd::is_valid_utf8(p)) << p;
}

TEST(DatasetsLabelledText, LegacyDecodings) {
  // Bytes from Python: "Привет, мир! Ёж".encode("koi8-r"), "Grüße".encode("latin-1").
  const std::string koi8 = "\xf0\xd2\xc9\xd7\xc5\xd4\x2c\x20\xcd\xc9\xd2\x21\x20\xb3\xd6";
  EXPECT_EQ(pd::decode_to_utf8(koi8, pd::LegacyEncoding::kKoi8r).value(), "Привет, мир! Ёж");
  EXPECT_EQ(pd::decode_to_utf8("\x47\x72\xfc\xdf\x65", pd::LegacyEncoding::kLatin1).value(), "Grüße");
  EXPECT_FALSE(pd::decode_to_utf8("\xfc", pd::LegacyEncoding::kNone).has_value());
  EXPECT_EQ(pd::decode_to_utf8("already \xC3\xBC", pd::LegacyEncoding::kKoi8r).value(), "already \xC3\xBC");
}

TEST(DatasetsLabelledText, FortuneLanguageIdentification) {
  pd::FortuneLangIdOptions opt;
  pd::LabelledSplits splits;
  try {
    splits = pd::fortune_language_id(opt);
  } catch (const std::exception& e) {
    FAIL() << "fortunes unavailable (run scripts/setup.sh): " << e.what();
  }
  const std::vector<std::string> langs = {"cs", "de", "en", "es", "it", "pl", "pt", "ru"};
  EXPECT_EQ(splits.train.id2label, langs);
  EXPECT_EQ(splits.test.id2label, langs);
  const auto counts = splits.counts();
  for (const auto& l : langs) {
    EXPECT_GT(counts.at(l)[0], 100) << l;
    EXPECT_GT(counts.at(l)[1], 0) << l;
    EXPECT_GT(counts.at(l)[2], 0) << l;
  }
  EXPECT_NE(splits.report().find("ru"), std::string::npos);
  const pd::LabelledText* parts[3] = {&splits.train, &splits.validation, &splits.test};
  std::set<std::string> seen[3];
  for (int s = 0; s < 3; ++s) {
    ASSERT_EQ(parts[s]->texts.size(), parts[s]->labels.size());
    for (const auto& t : parts[s]->texts) {
      ASSERT_TRUE(pd::is_valid_utf8(t)) << t;
      ASSERT_LE(t.size(), opt.max_bytes);
      ASSERT_GE(t.size(), opt.min_bytes);
      seen[s].insert(t);
    }
  }
  // Hash split: no text in two splits; about 80/10/10.
  for (const auto& t : seen[2]) EXPECT_EQ(seen[0].count(t) + seen[1].count(t), 0u);
  for (const auto& t : seen[1]) EXPECT_EQ(seen[0].count(t), 0u);
  const double total = static_cast<double>(splits.train.texts.size() + splits.validation.texts.size() + splits.test.texts.size());
  EXPECT_NEAR(splits.test.texts.size() / total, opt.test_fraction, 0.02);
  // Cyrillic really is decoded in ru; umlauts in de.
  auto has_label_text = [&](const std::string& label, const std::string& needle) {
    const int64_t id = splits.train.label2id.at(label);
    for (size_t i = 0; i < splits.train.texts.size(); ++i)
      if (splits.train.labels[i] == id && splits.train.texts[i].find(needle) != std::string::npos) return true;
    return false;
  };
  EXPECT_TRUE(has_label_text("ru", "\xD0\xB8"));   // и
  EXPECT_TRUE(has_label_text("de", "\xC3\xBC"));   // ü
}

// The row-by-row reader finds the rows that parsing the whole file finds, on files full of quotes,
// delimiters, embedded newlines and carriage returns.
TEST(DatasetsLabelledText, RowByRowReadingMatchesParsingTheWholeFile) {
  perceiver::testing::TempDir tmp;
  std::mt19937 rng(3);
  const std::vector<std::string> pieces = {"a", "b c", ",", "\"", "\n", "\r", "\r\n", " ", "\xC3\xA9"};
  for (int trial = 0; trial < 200; ++trial) {
    std::string file;
    const int rows = 1 + static_cast<int>(rng() % 6);
    for (int r = 0; r < rows; ++r) {
      const int fields = 1 + static_cast<int>(rng() % 3);
      for (int f = 0; f < fields; ++f) {
        std::string field;
        for (int k = static_cast<int>(rng() % 4); k > 0; --k) field += pieces[rng() % pieces.size()];
        const bool quoted = field.find_first_of(",\"\n\r") != std::string::npos || rng() % 4 == 0;
        if (quoted) {
          std::string q = "\"";
          for (const char c : field) q += c == '"' ? std::string("\"\"") : std::string(1, c);
          field = q + "\"";
        }
        file += (f ? "," : "") + field;
      }
      file += rng() % 3 == 0 ? "\r\n" : rng() % 5 == 0 ? "\n\n" : "\n";
    }
    if (rng() % 4 == 0) file.pop_back();  // no final newline
    write_file(tmp.path() / "f.csv", file);
    pd::LabelledReadOptions o;
    o.header = false;
    o.text_field = "0";
    o.label_field = "1";
    // The reference: every row of the whole file, kept by read_labelled_text's rules.
    std::vector<std::string> texts, labels;
    for (const auto& row : pd::parse_delimited(file, ',')) {
      if (row.size() < 2 || row[1].empty() || !pd::is_valid_utf8(row[0]) || !pd::is_valid_utf8(row[1])) continue;
      texts.push_back(row[0]);
      labels.push_back(row[1]);
    }
    const auto streamed = pd::open_labelled_text(tmp.path() / "f.csv", o);
    ASSERT_EQ(streamed.size(), static_cast<int64_t>(texts.size())) << "trial " << trial << ": " << file;
    EXPECT_EQ(streamed.label_names, labels) << "trial " << trial;
    for (int64_t i = 0; i < streamed.size(); ++i) EXPECT_EQ(streamed.texts->text(i), texts[static_cast<size_t>(i)]) << trial;
  }
}

TEST(DatasetsLabelledText, ATextIsReadWhenAskedForAndAChangedFileIsABadExample) {
  perceiver::testing::TempDir tmp;
  write_file(tmp.path() / "d.csv", "text,label\nfirst,a\nsecond,b\n");
  const auto rows = pd::open_labelled_text(tmp.path() / "d.csv");
  EXPECT_EQ(rows.texts->text(1), "second");
  write_file(tmp.path() / "d.csv", "text,label\nfirst,a\nsecond,b\nthird,c\n");
  EXPECT_THROW(rows.texts->text(0), pd::BadExample);
}
