// Byte-level token labels: offsets between characters and bytes, IOB1 -> IOB2, and the token-labels
// sources (jsonl, conll, langseg) on small files written here. Expected labels are worked by hand.
#include <gtest/gtest.h>

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "datasets/common.h"
#include "datasets/loader.h"
#include "datasets/sources.h"
#include "datasets/token_labels.h"
#include "tests/test_support.h"
#include "trainers/task_options.h"

namespace pd = perceiver::datasets;
namespace fs = std::filesystem;

namespace {

using perceiver::testing::error_of;
using perceiver::testing::TempDir;
using perceiver::testing::write_file;

constexpr int64_t X = pd::kIgnoreLabel;

pd::TokenLabelSet make(const std::string& yaml, const std::string& section = "data.train") {
  perceiver::trainers::SourceSection s(YAML::Load(yaml), "run.yaml", section);
  auto set = pd::find_source(pd::token_label_sources(), s, "token-labels")(s);
  s.section().finish();  // every key the test gives is declared
  return set;
}

std::string quoted(const fs::path& p) { return "'" + p.string() + "'"; }

// The labels of an example as tag names ("-" for -100), for readable comparisons.
std::vector<std::string> tags_of(const pd::TokenLabelSet& set, const pd::LabelledBytes& e) {
  std::vector<std::string> out;
  for (const int64_t l : e.labels) out.push_back(l == X ? "-" : set.label_names.at(static_cast<size_t>(l)));
  return out;
}

std::vector<std::string> repeat(const std::string& tag, size_t n) { return std::vector<std::string>(n, tag); }

std::vector<std::string> concat(std::initializer_list<std::vector<std::string>> parts) {
  std::vector<std::string> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace

// "Zürich 東京": "Zürich" is 7 bytes (ü two), the space 1, 東 and 京 three each: 14 bytes, 9 characters.
//   chars  0:Z 1:ü 2:r 3:i 4:c 5:h 6:' ' 7:東 8:京
//   bytes  0   1-2 3   4   5   6   7     8-10  11-13
TEST(TokenLabels, CharacterAndByteOffsetsOfMultiByteText) {
  const std::string text = "Z\xC3\xBCrich \xE6\x9D\xB1\xE4\xBA\xAC";  // "Zürich 東京"
  ASSERT_EQ(text.size(), 14u);
  EXPECT_EQ(pd::char_span_to_bytes(text, 0, 6), (std::pair<int64_t, int64_t>{0, 7}));   // "Zürich"
  EXPECT_EQ(pd::char_span_to_bytes(text, 7, 9), (std::pair<int64_t, int64_t>{8, 14}));  // "東京"
  EXPECT_EQ(pd::char_span_to_bytes(text, 8, 9), (std::pair<int64_t, int64_t>{11, 14}));  // "京"
  EXPECT_EQ(pd::char_span_to_bytes(text, 1, 2), (std::pair<int64_t, int64_t>{1, 3}));   // "ü"
  EXPECT_EQ(pd::char_span_to_bytes(text, 9, 9), (std::pair<int64_t, int64_t>{14, 14}));  // empty, at the end
  EXPECT_EQ(text.substr(8, 6), "\xE6\x9D\xB1\xE4\xBA\xAC");
  EXPECT_THROW(pd::char_span_to_bytes(text, 7, 10), std::invalid_argument);  // past the 9 characters
  EXPECT_THROW(pd::char_span_to_bytes(text, 10, 10), std::invalid_argument);
  EXPECT_THROW(pd::char_span_to_bytes(text, 3, 2), std::invalid_argument);  // start > end
  EXPECT_THROW(pd::char_span_to_bytes(text, -1, 2), std::invalid_argument);
  EXPECT_NE(error_of([&] { pd::char_span_to_bytes(text, 7, 10); }).find("9 characters"), std::string::npos);

  // Back: the characters begun before a byte offset; inside a character rounds up.
  EXPECT_EQ(pd::byte_to_char_offset(text, 0), 0);
  EXPECT_EQ(pd::byte_to_char_offset(text, 1), 1);
  EXPECT_EQ(pd::byte_to_char_offset(text, 2), 2);  // inside ü
  EXPECT_EQ(pd::byte_to_char_offset(text, 3), 2);
  EXPECT_EQ(pd::byte_to_char_offset(text, 7), 6);
  EXPECT_EQ(pd::byte_to_char_offset(text, 8), 7);
  EXPECT_EQ(pd::byte_to_char_offset(text, 11), 8);
  EXPECT_EQ(pd::byte_to_char_offset(text, 14), 9);
  EXPECT_THROW(pd::byte_to_char_offset(text, 15), std::invalid_argument);
  EXPECT_THROW(pd::byte_to_char_offset(text, -1), std::invalid_argument);
  for (int64_t c = 0; c <= 9; ++c) EXPECT_EQ(pd::byte_to_char_offset(text, pd::char_span_to_bytes(text, c, c).first), c);
}

TEST(TokenLabels, Iob1BecomesIob2) {
  // CoNLL-2003's IOB1: I- starts an entity; B- only where an entity directly follows one of its type.
  const std::vector<std::string> iob1 = {"I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "I-ORG", "I-MISC", "O", "B-PER"};
  const std::vector<std::string> iob2 = {"B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "B-ORG", "B-MISC", "O", "B-PER"};
  EXPECT_EQ(pd::iob1_to_iob2(iob1), iob2);
  EXPECT_EQ(pd::iob1_to_iob2(iob2), iob2);  // IOB2 is left as it is
  EXPECT_EQ(pd::iob1_to_iob2({}), std::vector<std::string>{});
  EXPECT_THROW(pd::iob1_to_iob2({"O", "PER"}), std::invalid_argument);
  EXPECT_THROW(pd::iob1_to_iob2({"B-"}), std::invalid_argument);
  EXPECT_EQ(pd::iob2_label_names({"PER", "LOC", "PER"}),
            (std::vector<std::string>{"O", "B-LOC", "B-PER", "I-LOC", "I-PER"}));
}

TEST(TokenLabels, SentencesAreCutAfterEndPunctuationAndTrimmed) {
  EXPECT_EQ(pd::sentences_of("  One. Two!  Three?\nFour 1.5 five.  "),
            (std::vector<std::string>{"One.", "Two!", "Three?", "Four 1.5 five."}));
  EXPECT_EQ(pd::sentences_of(" . "), std::vector<std::string>{"."});
  EXPECT_EQ(pd::sentences_of("   "), std::vector<std::string>{});
}

TEST(TokenLabels, InMemorySetsCheckTheirLabelsAndRemapToOtherNames) {
  const auto set = pd::token_label_set_from({{"ab", {1, X}}, {"c", {0}}}, {"O", "B-A", "I-A"});
  EXPECT_EQ(set.count, 2);
  EXPECT_EQ(set.get(0).labels, (std::vector<int64_t>{1, X}));
  EXPECT_THROW(pd::token_label_set_from({{"ab", {1}}}, {"O", "B-A"}), std::invalid_argument);
  EXPECT_THROW(pd::token_label_set_from({{"a", {2}}}, {"O", "B-A"}), std::invalid_argument);
  // The same labels over the training set's names: O=0, B-A=1, I-A=3 there.
  const auto remapped = pd::with_label_names(set, {"O", "B-A", "B-B", "I-A", "I-B"});
  EXPECT_EQ(remapped.get(0).labels, (std::vector<int64_t>{1, X}));
  EXPECT_EQ(pd::with_label_names(pd::token_label_set_from({{"xy", {2, 0}}}, {"O", "B-A", "I-A"}),
                                 {"O", "B-A", "B-B", "I-A", "I-B"})
                .get(0)
                .labels,
            (std::vector<int64_t>{3, 0}));
  const auto m = error_of([&] { pd::with_label_names(set, {"O", "B-B", "I-B"}); });
  EXPECT_NE(m.find("B-A, I-A"), std::string::npos) << m;
}

// {"text": "Anna flog nach Zürich.", spans: Anna [0,4) PER, Zürich [15,21) LOC} (characters). Bytes: "Anna flog
// nach " is 15 bytes, Zürich 7 (ü two), "." 1: 23 bytes. Labels: B-PER I-PER*3, O*11, B-LOC I-LOC*6, O.
TEST(TokenLabels, JsonlSpansLabelBytesAndFoldersAreRead) {
  TempDir tmp;
  fs::create_directories(tmp.path() / "d" / "sub");
  write_file(tmp.path() / "d" / "a.jsonl",
             "{\"text\": \"Anna flog nach Z\xC3\xBCrich.\", \"spans\": [{\"start\": 15, \"end\": 21, \"label\": \"LOC\"}, "
             "{\"start\": 0, \"end\": 4, \"label\": \"PER\"}], \"id\": 7}\n"
             "\n"
             "not json\n"
             "{\"text\": \"bad \xFF utf8\", \"spans\": []}\n"
             "{\"spans\": []}\r\n"
             "{\"text\": \"\xE6\x9D\xB1\xE4\xBA\xAC\", \"spans\": [{\"start\": 0, \"end\": 2, \"label\": \"LOC\"}, "
             "{\"start\": 1, \"end\": 1, \"label\": \"X\"}]}\r\n");
  write_file(tmp.path() / "d" / "sub" / "b.jsonl", "{\"body\": \"no entities\", \"ents\": []}\n");
  write_file(tmp.path() / "d" / "notes.txt", "not read\n");
  const auto set = make("{type: jsonl, path: " + quoted(tmp.path() / "d") + "}");
  // a.jsonl: 2 texts (the blank line is no text; 3 invalid lines skipped); b.jsonl's keys are not text/spans.
  ASSERT_EQ(set.count, 2);
  EXPECT_EQ(set.label_names, (std::vector<std::string>{"O", "B-LOC", "B-PER", "I-LOC", "I-PER"}));
  const auto first = set.get(0);
  EXPECT_EQ(first.text, "Anna flog nach Z\xC3\xBCrich.");
  EXPECT_EQ(tags_of(set, first),
            concat({{"B-PER"}, repeat("I-PER", 3), repeat("O", 11), {"B-LOC"}, repeat("I-LOC", 6), {"O"}}));
  // 東京 as one LOC: 6 bytes; the empty span labels nothing.
  EXPECT_EQ(tags_of(set, set.get(1)), concat({{"B-LOC"}, repeat("I-LOC", 5)}));

  // Other keys.
  const auto keyed = make("{type: jsonl, path: " + quoted(tmp.path() / "d" / "sub" / "b.jsonl") +
                          ", text_key: body, spans_key: ents}");
  ASSERT_EQ(keyed.count, 1);
  EXPECT_EQ(keyed.label_names, std::vector<std::string>{"O"});
  EXPECT_EQ(keyed.get(0).labels, std::vector<int64_t>(11, 0));

  // A file changed after indexing is a bad example naming it.
  write_file(tmp.path() / "d" / "sub" / "b.jsonl", "{\"body\": \"shorter\", \"ents\": []}\n");
  const auto m = error_of([&] { keyed.get(0); });
  EXPECT_NE(m.find("b.jsonl"), std::string::npos) << m;
}

TEST(TokenLabels, JsonlErrorsNameTheFileAndLine) {
  TempDir tmp;
  const auto file = tmp.path() / "e.jsonl";
  auto error = [&](const std::string& second_line) {
    write_file(file, "{\"text\": \"fine\", \"spans\": []}\n" + second_line + "\n");
    return error_of([&] { make("{type: jsonl, path: " + quoted(file) + "}"); });
  };
  const auto where = file.string() + ":2: ";
  auto m = error("{\"text\": \"abcdef\", \"spans\": [{\"start\": 0, \"end\": 3, \"label\": \"A\"}, "
                 "{\"start\": 2, \"end\": 5, \"label\": \"B\"}]}");
  EXPECT_NE(m.find(where + "spans [0, 3) A and [2, 5) B overlap"), std::string::npos) << m;
  m = error("{\"text\": \"Z\xC3\xBCrich\", \"spans\": [{\"start\": 0, \"end\": 7, \"label\": \"LOC\"}]}");  // 6 characters
  EXPECT_NE(m.find(where + "span 0: character span [0, 7) ends past the text's 6 characters"), std::string::npos) << m;
  m = error("{\"text\": \"abc\", \"spans\": [{\"start\": 0, \"end\": 1, \"lable\": \"A\"}]}");
  EXPECT_NE(m.find(where + "span 0 has an unknown key 'lable'"), std::string::npos) << m;
  m = error("{\"text\": \"abc\", \"spans\": [{\"start\": 0, \"label\": \"A\"}]}");
  EXPECT_NE(m.find(where + "span 0 needs an integer 'end'"), std::string::npos) << m;
  m = error("{\"text\": \"abc\", \"spans\": [{\"start\": 2, \"end\": 1, \"label\": \"A\"}]}");
  EXPECT_NE(m.find(where + "span 0: character span [2, 1) is not a span"), std::string::npos) << m;
  m = error("{\"text\": \"abc\"}");
  EXPECT_NE(m.find(where + "no 'spans' list"), std::string::npos) << m;
  m = error("not json");  // skipped: nothing else is wrong, and one text remains
  EXPECT_EQ(m, "");
  write_file(file, "not json\n");
  m = error_of([&] { make("{type: jsonl, path: " + quoted(file) + "}"); });
  EXPECT_NE(m.find("holds no text with spans (1 invalid line(s) skipped)"), std::string::npos) << m;
  m = error_of([&] { make("{type: jsonl, path: " + quoted(tmp.path() / "missing.jsonl") + "}"); });
  EXPECT_NE(m.find("missing.jsonl' does not exist"), std::string::npos) << m;
}

// CoNLL-2003 layout (token POS chunk tag, IOB1). Sentence 1: "EU rejects German call" with
// I-ORG O I-MISC O (IOB1) = B-ORG O B-MISC O (IOB2). Sentence 2: "Peter Blackburn" I-PER I-PER = B-PER I-PER.
TEST(TokenLabels, ConllReadsSentencesWithEitherSchemeAndEitherLabelBytes) {
  TempDir tmp;
  const auto file = tmp.path() / "train.txt";
  write_file(file,
             "-DOCSTART- -X- -X- O\n"
             "\n"
             "EU NNP B-NP I-ORG\n"
             "rejects VBZ B-VP O\n"
             "German JJ B-NP I-MISC\r\n"
             "call NN I-NP O\n"
             "\n"
             "\n"
             "Peter NNP B-NP I-PER\n"
             "Blackburn NNP I-NP I-PER\n");
  const auto first = make("{type: conll, path: " + quoted(file) + ", scheme: iob1}");
  ASSERT_EQ(first.count, 2);
  EXPECT_EQ(first.label_names,
            (std::vector<std::string>{"O", "B-MISC", "B-ORG", "B-PER", "I-MISC", "I-ORG", "I-PER"}));
  // label_bytes first: "EU rejects German call", each token's first byte its tag, everything else -100.
  auto e = first.get(0);
  EXPECT_EQ(e.text, "EU rejects German call");
  EXPECT_EQ(tags_of(first, e), concat({{"B-ORG", "-"}, {"-"}, {"O"}, repeat("-", 6), {"-"}, {"B-MISC"},
                                       repeat("-", 5), {"-"}, {"O", "-", "-", "-"}}));
  e = first.get(1);
  EXPECT_EQ(e.text, "Peter Blackburn");
  EXPECT_EQ(tags_of(first, e), concat({{"B-PER"}, repeat("-", 4), {"-"}, {"I-PER"}, repeat("-", 8)}));

  // label_bytes all: every byte; B- only on a B- token's first byte; separators inside an entity I-, else O.
  const auto all = make("{type: conll, path: " + quoted(file) + ", scheme: iob1, label_bytes: all, separator: '__'}");
  e = all.get(0);
  EXPECT_EQ(e.text, "EU__rejects__German__call");
  EXPECT_EQ(tags_of(all, e), concat({{"B-ORG", "I-ORG"}, repeat("O", 2), repeat("O", 7), repeat("O", 2), {"B-MISC"},
                                     repeat("I-MISC", 5), repeat("O", 2), repeat("O", 4)}));
  e = all.get(1);
  EXPECT_EQ(e.text, "Peter__Blackburn");
  EXPECT_EQ(tags_of(all, e), concat({{"B-PER"}, repeat("I-PER", 4), repeat("I-PER", 2), repeat("I-PER", 9)}));

  // The same file read as IOB2: I-ORG stays an I- tag (seqeval then starts an entity there).
  const auto iob2 = make("{type: conll, path: " + quoted(file) + "}");
  EXPECT_EQ(tags_of(iob2, iob2.get(0))[0], "I-ORG");
  // Two adjacent entities of one type under `all`: B-LOC B-LOC -> the separator between them is O.
  write_file(tmp.path() / "two.conll", "Paris\tB-LOC\nLondon\tB-LOC\nstreet\tI-LOC\n");
  const auto two = make("{type: conll, path: " + quoted(tmp.path() / "two.conll") + ", label_bytes: all}");
  EXPECT_EQ(tags_of(two, two.get(0)), concat({{"B-LOC"}, repeat("I-LOC", 4), {"O"}, {"B-LOC"}, repeat("I-LOC", 5),
                                              {"I-LOC"}, {"I-LOC"}, repeat("I-LOC", 5)}));
  // Other columns: token in column 1, tag in column 0, a folder of files.
  fs::create_directories(tmp.path() / "f");
  write_file(tmp.path() / "f" / "x.tsv", "B-A a\nO b\n\nO c\n");
  write_file(tmp.path() / "f" / "y", "I-A dd\n");
  const auto cols = make("{type: conll, path: " + quoted(tmp.path() / "f") + ", token_column: 1, tag_column: 0}");
  ASSERT_EQ(cols.count, 3);
  EXPECT_EQ(cols.get(0).text, "a b");
  EXPECT_EQ(cols.get(2).text, "dd");
  EXPECT_EQ(tags_of(cols, cols.get(2)), (std::vector<std::string>{"I-A", "-"}));
}

TEST(TokenLabels, ConllErrorsNameTheFileAndLine) {
  TempDir tmp;
  const auto file = tmp.path() / "bad.conll";
  write_file(file, "a X B-PER\nb X O\n\nc O\n");
  auto m = error_of([&] { make("{type: conll, path: " + quoted(file) + "}"); });
  EXPECT_NE(m.find(file.string() + ":4: 2 columns, but the file's first token line has 3"), std::string::npos) << m;
  write_file(file, "a X B-PER\nb X PER\n");
  m = error_of([&] { make("{type: conll, path: " + quoted(file) + "}"); });
  EXPECT_NE(m.find(file.string() + ":2: tag 'PER' is not O, B-TYPE or I-TYPE"), std::string::npos) << m;
  write_file(file, "a B-PER\n");
  m = error_of([&] { make("{type: conll, path: " + quoted(file) + ", token_column: 2}"); });
  EXPECT_NE(m.find(file.string() + ":1: token_column 2 is not among the line's 2 columns"), std::string::npos) << m;
  m = error_of([&] { make("{type: conll, path: " + quoted(file) + ", scheme: iob3}"); });
  EXPECT_NE(m.find("run.yaml"), std::string::npos) << m;
  EXPECT_NE(m.find("scheme"), std::string::npos) << m;
  write_file(file, "\n-DOCSTART- O\n\n");
  m = error_of([&] { make("{type: conll, path: " + quoted(file) + "}"); });
  EXPECT_NE(m.find("holds no sentences"), std::string::npos) << m;
}

// langseg: needs the fortunes packages (scripts/setup.sh), as the fortunes source does.
TEST(TokenLabels, LangsegTextsAreDeterministicLabelledSentencesOfDistinctLanguages) {
  pd::TokenLabelSet set, again, eval, other_seed, other_again;
  try {
    set = make("{type: langseg, count: 50, max_bytes: 600}");
    again = make("{type: langseg, count: 50, max_bytes: 600}");
    eval = make("{type: langseg, count: 10}", "data.eval");
    other_seed = make("{type: langseg, count: 50, max_bytes: 600, seed: 9, min_languages: 3, max_languages: 3}");
    other_again = make("{type: langseg, count: 50, max_bytes: 600, seed: 9, min_languages: 3, max_languages: 3}");
  } catch (const std::runtime_error& e) {
    FAIL() << "fortunes unavailable (run scripts/setup.sh): " << e.what();
  }
  EXPECT_EQ(set.count, 50);
  EXPECT_EQ(eval.count, 10);
  const std::vector<std::string> langs = {"cs", "de", "en", "es", "it", "pl", "pt", "ru"};
  EXPECT_EQ(set.label_names, pd::iob2_label_names(langs));
  EXPECT_EQ(eval.label_names, set.label_names);
  std::set<std::string> texts;
  std::set<size_t> language_counts;
  // `twin`: the same source made again, which must give the same texts.
  auto check = [&](const pd::TokenLabelSet& s, const pd::TokenLabelSet& twin, int64_t i, int64_t lo, int64_t hi,
                   size_t max_bytes) {
    SCOPED_TRACE("example " + std::to_string(i));
    const auto e = s.get(i);
    ASSERT_EQ(e.labels.size(), e.text.size());
    ASSERT_FALSE(e.text.empty());
    EXPECT_LE(e.text.size(), max_bytes);
    EXPECT_TRUE(pd::is_valid_utf8(e.text));
    const auto tags = tags_of(s, e);
    // Runs: B-<lang> then I-<lang>, separated by exactly one O byte that is a space.
    std::vector<std::string> run_langs;
    size_t start = 0;
    while (start < tags.size()) {
      ASSERT_EQ(tags[start].substr(0, 2), "B-") << tags[start];
      const auto lang = tags[start].substr(2);
      size_t end = start + 1;
      while (end < tags.size() && tags[end] == "I-" + lang) ++end;
      const auto sentence = e.text.substr(start, end - start);
      EXPECT_EQ(pd::sentences_of(sentence), std::vector<std::string>{sentence}) << "one trimmed sentence";
      run_langs.push_back(lang);
      if (end < tags.size()) {
        EXPECT_EQ(tags[end], "O");
        EXPECT_EQ(e.text[end], ' ');
        ++end;
      }
      start = end;
    }
    EXPECT_EQ(std::set<std::string>(run_langs.begin(), run_langs.end()).size(), run_langs.size()) << "distinct languages";
    EXPECT_LE(static_cast<int64_t>(run_langs.size()), hi);
    // A text shorter than min_languages stopped at max_bytes: the next sentence did not fit.
    if (static_cast<int64_t>(run_langs.size()) < lo) EXPECT_GT(e.text.size(), max_bytes / 4);
    language_counts.insert(run_langs.size());
    texts.insert(e.text);
    EXPECT_EQ(e.text, twin.get(i).text);
    EXPECT_EQ(e.labels, twin.get(i).labels);
  };
  for (int64_t i = 0; i < set.count; ++i) check(set, again, i, 2, 4, 600);
  EXPECT_GE(texts.size(), 45u) << "texts differ";
  EXPECT_GE(language_counts.size(), 2u);
  language_counts.clear();
  for (int64_t i = 0; i < other_seed.count; ++i) check(other_seed, other_again, i, 3, 3, 600);
  EXPECT_NE(other_seed.get(0).text, set.get(0).text);
  for (int64_t i = 0; i < eval.count; ++i) {
    const auto e = eval.get(i);
    EXPECT_LE(e.text.size(), 2048u);
    EXPECT_EQ(texts.count(e.text), 0u) << "validation sentences differ from training ones";
  }
  const auto m = error_of([&] { make("{type: langseg, min_languages: 3, max_languages: 2}"); });
  EXPECT_NE(m.find("max_languages"), std::string::npos) << m;
}
