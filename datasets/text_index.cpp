#include "datasets/text_index.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <stdexcept>

#include "datasets/common.h"

namespace perceiver::datasets {
namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'P', 'C', 'T', 'X', 'T', 'I', 'X', '1'};
constexpr int kFormat = 1;
constexpr uint64_t kOffsetMask = (uint64_t{1} << IndexedText::kOffsetBits) - 1;
constexpr size_t kChunk = size_t{1} << 20;

const char* unit_name(TextUnit unit) {
  switch (unit) {
    case TextUnit::kFile: return "file";
    case TextUnit::kParagraph: return "paragraph";
    case TextUnit::kLine: return "line";
  }
  return "?";
}

nlohmann::json options_json(const fs::path& root, const TextIndexOptions& o) {
  return {{"root", fs::absolute(root).lexically_normal().string()},
          {"unit", unit_name(o.read.unit)},
          {"jsonl", o.read.jsonl},
          {"jsonl_field", o.read.jsonl_field},
          {"extensions", o.read.extensions},
          {"separator", o.separator}};
}

// Strict UTF-8 checked one byte at a time, exactly as is_valid_utf8 checks a whole line.
struct Utf8Check {
  bool ok = true;
  int need = 0, length = 0;
  uint32_t cp = 0;
  void feed(unsigned char c) {
    if (!ok) return;
    if (need == 0) {
      if (c < 0x80) return;
      if (c >= 0xC2 && c <= 0xDF) length = 2, cp = c & 0x1F;
      else if (c >= 0xE0 && c <= 0xEF) length = 3, cp = c & 0x0F;
      else if (c >= 0xF0 && c <= 0xF4) length = 4, cp = c & 0x07;
      else ok = false;
      need = length - 1;
      return;
    }
    if ((c & 0xC0) != 0x80) {
      ok = false;
      return;
    }
    cp = (cp << 6) | (c & 0x3F);
    if (--need == 0 && ((length == 3 && cp < 0x800) || (length == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
                        (cp >= 0xD800 && cp <= 0xDFFF)))
      ok = false;
  }
  bool valid() const { return ok && need == 0; }
};

// One line of a file as read_text splits it: content without its "\r\n" or "\n".
struct Line {
  int64_t start = 0;
  int64_t length = 0;
  bool lf_follows = false;  // the content is followed directly by '\n' (no '\r')
  bool valid = true;        // strict UTF-8
  bool blank = true;        // only spaces, tabs and carriage returns
  std::string text;         // the content, kept for JSONL only
};

// Calls on_line for every line of `file`, reading it in chunks; `progress` gets the bytes read.
template <typename OnLine, typename Progress>
void scan_lines(const fs::path& file, bool keep_text, OnLine&& on_line, Progress&& progress) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open '" + file.string() + "' to index it");
  std::vector<char> buffer(kChunk);
  Line line;
  Utf8Check utf8;
  unsigned char last = 0;
  int64_t pos = 0;
  auto finish = [&](int64_t end, bool terminated) {
    const bool cr = end > line.start && last == '\r';
    line.length = end - line.start - (cr ? 1 : 0);
    line.lf_follows = terminated && !cr;
    line.valid = utf8.valid();
    if (cr && keep_text) line.text.pop_back();
    on_line(line);
    line = Line{};
    line.start = end + 1;
    utf8 = Utf8Check{};
    last = 0;
  };
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto got = static_cast<int64_t>(in.gcount());
    if (got <= 0) break;
    for (int64_t i = 0; i < got; ++i, ++pos) {
      const auto c = static_cast<unsigned char>(buffer[static_cast<size_t>(i)]);
      if (c == '\n') {
        finish(pos, true);
        continue;
      }
      utf8.feed(c);
      line.blank = line.blank && (c == ' ' || c == '\t' || c == '\r');
      last = c;
      if (keep_text) line.text += static_cast<char>(c);
    }
    progress(got);
  }
  if (in.bad()) throw std::runtime_error("error while reading '" + file.string() + "' to index it");
  if (pos > line.start) finish(pos, false);
}

// Describes the corpus's stream as pieces while the files are scanned once, in order.
class Builder {
 public:
  Builder(const TextIndexOptions& options, fs::path packed_path)
      : options_(options), pool_("\n" + options.separator), packed_path_(std::move(packed_path)) {
    stores_.emplace_back();  // store 0: the pool
  }

  void add(const fs::path& file, const FileStamp& stamp) {
    const bool jsonl = reads_as_jsonl(file, options_.read);
    const uint64_t store = jsonl ? packed_store() : add_store(stamp);
    if (stamp.size > static_cast<int64_t>(kOffsetMask))
      throw std::runtime_error("'" + file.string() + "' is over 1 TiB: split it into smaller files");
    bool in_document = false;  // a paragraph or a whole file being emitted
    scan_lines(
        file, jsonl,
        [&](const Line& line) {
          if (jsonl) {
            if (auto text = jsonl_document(line.text, options_.read.jsonl_field, invalid_lines_)) {
              begin_document();
              write_packed(*text);
            }
            return;
          }
          if (!line.valid) {
            ++invalid_lines_;
            return;
          }
          switch (options_.read.unit) {
            case TextUnit::kLine:
              if (line.blank) return;
              begin_document();
              emit_line(store, line);
              return;
            case TextUnit::kParagraph:
              if (line.blank) {
                in_document = false;
                return;
              }
              if (in_document) newline();
              else begin_document();
              in_document = true;
              emit_line(store, line);
              return;
            case TextUnit::kFile:
              if (!in_document) begin_document();
              in_document = true;
              emit_line(store, line);
              newline();
              return;
          }
        },
        [&](int64_t bytes) { progress_(bytes); });
    const auto after = FileStamp::of(file);
    if (after != stamp)
      throw std::runtime_error("'" + file.string() + "' changed while it was being indexed (" + stamp.difference(after) +
                               "); index it again once it is complete");
  }

  void set_progress(std::function<void(int64_t)> progress) { progress_ = std::move(progress); }

  // Closes the packed file; the stores' stamps are final from here on.
  void finish() {
    if (!packed_) return;
    packed_->close();
    if (!*packed_) throw std::runtime_error("cannot write '" + packed_path_.string() + "' (disk full?)");
    const auto tmp = fs::path(packed_path_.string() + ".tmp");
    fs::rename(tmp, packed_path_);
    stores_[packed_store_] = FileStamp::of(packed_path_);
  }

  const std::string& pool() const { return pool_; }
  const std::vector<FileStamp>& stores() const { return stores_; }
  const std::vector<IndexedText::Piece>& pieces() const { return pieces_; }
  uint64_t bytes() const { return bytes_; }
  int64_t documents() const { return documents_; }
  int64_t invalid_lines() const { return invalid_lines_; }

 private:
  static uint64_t address(uint64_t store, uint64_t offset) { return store << IndexedText::kOffsetBits | offset; }

  uint64_t add_store(const FileStamp& stamp) {
    if (stores_.size() >= (uint64_t{1} << (64 - IndexedText::kOffsetBits)))
      throw std::runtime_error("a text corpus of more than 16 million files: merge some of them");
    stores_.push_back(stamp);
    return stores_.size() - 1;
  }

  uint64_t packed_store() {
    if (!packed_) {
      packed_.emplace(packed_path_.string() + ".tmp", std::ios::binary | std::ios::trunc);
      if (!*packed_) throw std::runtime_error("cannot create '" + packed_path_.string() + ".tmp' for the packed JSONL texts");
      packed_store_ = add_store({packed_path_.string(), 0, 0});
    }
    return packed_store_;
  }

  // Appends bytes at `at` to the stream; contiguous runs extend the last piece.
  void run(uint64_t at, uint64_t length) {
    if (length == 0) return;
    if (pieces_.empty() || run_end_ != at) pieces_.push_back({bytes_, at});
    bytes_ += length;
    run_end_ = at + length;
    lf_after_.reset();
  }

  void emit_line(uint64_t store, const Line& line) {
    run(address(store, static_cast<uint64_t>(line.start)), static_cast<uint64_t>(line.length));
    if (line.lf_follows) lf_after_ = address(store, static_cast<uint64_t>(line.start + line.length));
  }

  // A '\n': the file's own when it directly follows what was emitted last, else the pool's.
  void newline() {
    if (lf_after_) run(*lf_after_, 1);
    else run(address(0, 0), 1);
  }

  void write_packed(const std::string& text) {
    packed_->write(text.data(), static_cast<std::streamsize>(text.size()));
    run(address(packed_store_, packed_size_), text.size());
    packed_size_ += text.size();
  }

  void begin_document() {
    if (documents_++ == 0) return;
    const auto& separator = options_.separator;
    if (separator == "\n" && lf_after_) newline();
    else if (packed_ && run_end_ == address(packed_store_, packed_size_)) write_packed(separator);
    else run(address(0, 1), separator.size());
  }

  TextIndexOptions options_;
  std::string pool_;
  fs::path packed_path_;
  std::optional<std::ofstream> packed_;
  uint64_t packed_store_ = 0, packed_size_ = 0;
  std::vector<FileStamp> stores_;
  std::vector<IndexedText::Piece> pieces_;
  uint64_t bytes_ = 0, run_end_ = 0;
  std::optional<uint64_t> lf_after_;
  int64_t documents_ = 0, invalid_lines_ = 0;
  std::function<void(int64_t)> progress_ = [](int64_t) {};
};

std::vector<FileStamp> stamps_of(const std::vector<fs::path>& files) {
  std::vector<FileStamp> out;
  out.reserve(files.size());
  for (const auto& f : files) out.push_back(FileStamp::of(f));
  return out;
}

// Logs progress at most every two seconds while a long pass runs.
class ProgressLog {
 public:
  ProgressLog(std::string what, int64_t total) : what_(std::move(what)), total_(total) {}
  void operator()(int64_t bytes) {
    done_ += bytes;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::seconds(2)) return;
    last_ = now;
    const double seconds = std::chrono::duration<double>(now - start_).count();
    spdlog::info("{}: {:.0f} of {:.0f} MB ({:.0f} %, {:.0f} MB/s)", what_, done_ / 1e6, total_ / 1e6,
                 100.0 * static_cast<double>(done_) / static_cast<double>(std::max<int64_t>(total_, 1)),
                 done_ / 1e6 / std::max(seconds, 1e-9));
  }

 private:
  std::string what_;
  int64_t total_, done_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now(), last_ = start_;
};

}  // namespace

std::shared_ptr<const IndexedText> IndexedText::open(const fs::path& path, const TextIndexOptions& options) {
  const auto files = text_files(path, options.read);
  if (files.empty()) throw std::runtime_error("text corpus '" + path.string() + "' has no files to read");
  const auto sources = stamps_of(files);
  const auto key = options_json(path, options);
  const auto dir = options.cache_dir.empty() ? default_cache_dir() / "text-index" : options.cache_dir;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create the index folder '" + dir.string() + "': " + ec.message());
  const auto stem = dir / fmt::format("{:016x}", stable_hash(key.dump()));
  const auto index_file = fs::path(stem.string() + ".idx");
  const FileLock lock(stem.string() + ".lock");

  std::shared_ptr<IndexedText> text(new IndexedText());
  text->separator_ = options.separator;
  text->pool_ = "\n" + options.separator;
  auto& summary = text->summary_;
  summary.index_file = index_file;
  summary.files = static_cast<int64_t>(files.size());

  // An existing index is used only when it describes these very files.
  std::string stale;
  if (std::ifstream in(index_file, std::ios::binary); in) {
    try {
      char magic[sizeof kMagic];
      uint64_t header_size = 0, count = 0;
      in.read(magic, sizeof magic);
      in.read(reinterpret_cast<char*>(&header_size), sizeof header_size);
      if (!in || std::memcmp(magic, kMagic, sizeof kMagic) != 0 || header_size > (uint64_t{1} << 32))
        throw std::runtime_error("not an index file");
      std::string header(header_size, '\0');
      in.read(header.data(), static_cast<std::streamsize>(header_size));
      const auto j = nlohmann::json::parse(header);
      if (j.at("format") != kFormat || j.at("options") != key) throw std::runtime_error("another format or options");
      std::vector<FileStamp> indexed;
      for (const auto& s : j.at("sources")) indexed.push_back(FileStamp::from_json(s));
      if (indexed.size() != sources.size()) {
        stale = fmt::format("it lists {} files, the corpus now has {}", indexed.size(), sources.size());
      } else {
        for (size_t i = 0; i < sources.size() && stale.empty(); ++i)
          if (indexed[i].path != sources[i].path) stale = "'" + sources[i].path + "' was added or renamed";
          else if (const auto why = indexed[i].difference(sources[i]); !why.empty()) stale = "'" + sources[i].path + "': " + why;
      }
      text->stores_.emplace_back();
      for (const auto& s : j.at("stores")) text->stores_.push_back(FileStamp::from_json(s));
      for (size_t i = 1; i < text->stores_.size() && stale.empty(); ++i) {
        const auto& store = text->stores_[i];
        if (!fs::exists(store.path, ec)) stale = "'" + store.path + "' is missing";
        else if (const auto why = store.difference(FileStamp::of(store.path)); !why.empty()) stale = "'" + store.path + "': " + why;
      }
      if (stale.empty()) {
        in.read(reinterpret_cast<char*>(&count), sizeof count);
        const auto expected = sizeof kMagic + 2 * sizeof(uint64_t) + header_size + count * sizeof(Piece);
        if (!in || count > (uint64_t{1} << 40) || fs::file_size(index_file) != expected) throw std::runtime_error("truncated");
        text->pieces_.resize(count);
        in.read(reinterpret_cast<char*>(text->pieces_.data()), static_cast<std::streamsize>(count * sizeof(Piece)));
        if (!in) throw std::runtime_error("truncated");
        text->bytes_ = j.at("bytes").get<uint64_t>();
        for (size_t i = 0; i < text->pieces_.size(); ++i) {  // a damaged index must not read out of bounds
          const auto& p = text->pieces_[i];
          if ((p.address >> kOffsetBits) >= text->stores_.size() || p.stream_start >= text->bytes_ ||
              (i > 0 && p.stream_start <= text->pieces_[i - 1].stream_start) || (i == 0 && p.stream_start != 0))
            throw std::runtime_error("piece " + std::to_string(i) + " is out of range");
        }
        summary.documents = j.at("documents").get<int64_t>();
        summary.invalid_lines = j.at("invalid_lines").get<int64_t>();
        summary.bytes = static_cast<int64_t>(text->bytes_);
        summary.pieces = static_cast<int64_t>(count);
        return text;
      }
    } catch (const std::exception& e) {
      stale = std::string("it is unreadable (") + e.what() + ")";
    }
    spdlog::info("re-indexing text corpus '{}': {}", path.string(), stale);
    text->stores_.clear();
    text->pieces_.clear();
  }

  int64_t total = 0;
  for (const auto& s : sources) total += s.size;
  Builder builder(options, stem.string() + ".packed");
  ProgressLog progress("indexing text corpus '" + path.string() + "'", total);
  builder.set_progress([&](int64_t bytes) { progress(bytes); });
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < files.size(); ++i) builder.add(files[i], sources[i]);
  builder.finish();

  text->stores_ = builder.stores();
  text->pieces_ = builder.pieces();
  text->bytes_ = builder.bytes();
  summary.documents = builder.documents();
  summary.invalid_lines = builder.invalid_lines();
  summary.bytes = static_cast<int64_t>(text->bytes_);
  summary.pieces = static_cast<int64_t>(text->pieces_.size());
  summary.built = true;

  nlohmann::json header = {{"format", kFormat}, {"options", key},        {"bytes", text->bytes_},
                           {"documents", summary.documents},             {"invalid_lines", summary.invalid_lines},
                           {"sources", nlohmann::json::array()},         {"stores", nlohmann::json::array()}};
  for (const auto& s : sources) header["sources"].push_back(s.to_json());
  for (size_t i = 1; i < text->stores_.size(); ++i) header["stores"].push_back(text->stores_[i].to_json());
  const auto header_text = header.dump();
  std::string bytes(kMagic, sizeof kMagic);
  const uint64_t header_size = header_text.size(), count = text->pieces_.size();
  bytes.append(reinterpret_cast<const char*>(&header_size), sizeof header_size);
  bytes += header_text;
  bytes.append(reinterpret_cast<const char*>(&count), sizeof count);
  bytes.append(reinterpret_cast<const char*>(text->pieces_.data()), count * sizeof(Piece));
  write_file_atomically(index_file, bytes);
  spdlog::info("indexed text corpus '{}': {} files, {} documents, {:.1f} MB in {} pieces, in {:.1f} s (kept in {})",
               path.string(), summary.files, summary.documents, summary.bytes / 1e6, summary.pieces,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), index_file.string());
  return text;
}

void IndexedText::read(int64_t offset, int64_t count, char* out) const {
  if (offset < 0 || count < 0 || static_cast<uint64_t>(offset + count) > bytes_)
    throw std::out_of_range("text stream: bytes [" + std::to_string(offset) + ", " + std::to_string(offset + count) +
                            ") outside its " + std::to_string(bytes_));
  if (count == 0) return;
  auto at = static_cast<uint64_t>(offset);
  auto piece = std::upper_bound(pieces_.begin(), pieces_.end(), at,
                                [](uint64_t v, const Piece& p) { return v < p.stream_start; }) - 1;
  while (count > 0) {
    const uint64_t end = piece + 1 != pieces_.end() ? (piece + 1)->stream_start : bytes_;
    const auto take = static_cast<int64_t>(std::min<uint64_t>(static_cast<uint64_t>(count), end - at));
    const uint64_t address = piece->address + (at - piece->stream_start);
    const uint64_t store = address >> kOffsetBits, within = address & kOffsetMask;
    if (store == 0) std::memcpy(out, pool_.data() + within, static_cast<size_t>(take));
    else read_stamped(stores_[store], static_cast<int64_t>(within), take, out);
    out += take;
    at += static_cast<uint64_t>(take);
    count -= take;
    ++piece;
  }
}

std::vector<std::string> IndexedText::sample_documents(int64_t max_count, int64_t max_bytes) const {
  std::vector<std::string> out;
  const auto total = static_cast<int64_t>(bytes_);
  int64_t last_start = -1;
  for (int64_t k = 0; k < max_count && total > 0; ++k) {
    const int64_t at = k * total / max_count;
    const int64_t lo = std::max<int64_t>(0, at - max_bytes), hi = std::min(total, at + max_bytes);
    std::string window(static_cast<size_t>(hi - lo), '\0');
    try {
      read(lo, hi - lo, window.data());
    } catch (const BadExample&) {
      continue;
    }
    const auto local = static_cast<size_t>(at - lo);
    size_t begin = 0, end = window.size();
    if (!separator_.empty()) {
      const auto before = window.rfind(separator_, local);
      if (before != std::string::npos) begin = before + separator_.size();
      const auto after = window.find(separator_, local);
      if (after != std::string::npos) end = after;
    }
    while (begin < end && (static_cast<unsigned char>(window[begin]) & 0xC0) == 0x80) ++begin;  // not mid-character
    if (begin >= end || lo + static_cast<int64_t>(begin) == last_start) continue;
    last_start = lo + static_cast<int64_t>(begin);
    out.push_back(window.substr(begin, std::min<size_t>(end - begin, static_cast<size_t>(max_bytes))));
  }
  return out;
}

}  // namespace perceiver::datasets
