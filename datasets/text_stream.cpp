#include "datasets/text_stream.h"

#include <cstring>
#include <stdexcept>

#include "datasets/byte_vocab.h"

namespace perceiver::datasets {

MemoryTextStream::MemoryTextStream(std::vector<std::string> documents, const std::string& separator)
    : documents_(std::move(documents)) {
  for (size_t i = 0; i < documents_.size(); ++i) {
    if (i > 0) bytes_ += separator;
    bytes_ += documents_[i];
  }
}

void MemoryTextStream::read(int64_t offset, int64_t count, char* out) const {
  if (offset < 0 || count < 0 || offset + count > size())
    throw std::out_of_range("text stream: bytes [" + std::to_string(offset) + ", " + std::to_string(offset + count) +
                            ") outside its " + std::to_string(size()));
  std::memcpy(out, bytes_.data() + offset, static_cast<size_t>(count));
}

std::vector<std::string> MemoryTextStream::sample_documents(int64_t max_count, int64_t /*max_bytes*/) const {
  const auto n = static_cast<int64_t>(documents_.size());
  if (n <= max_count) return documents_;
  std::vector<std::string> out;
  for (int64_t k = 0; k < max_count; ++k) out.push_back(documents_[static_cast<size_t>(k * n / max_count)]);
  return out;
}

ByteWindowDataset::ByteWindowDataset(std::shared_ptr<const TextStream> stream, const WindowOptions& options)
    : stream_(std::move(stream)), options_(options) {
  if (!stream_) throw std::invalid_argument("ByteWindowDataset: null text stream");
  const int64_t specials = options.add_cls_sep ? 2 : 0;
  if (options.length <= specials)
    throw std::invalid_argument("byte window length " + std::to_string(options.length) + " must exceed " +
                                std::to_string(specials) + " special tokens");
  body_ = options.length - specials;
  const int64_t total = stream_->size();
  windows_ = total / body_;
  if (options.pad_last && total % body_ != 0) ++windows_;
}

Example ByteWindowDataset::get(int64_t index) const {
  if (index < 0 || index >= windows_)
    throw std::out_of_range("byte window " + std::to_string(index) + " outside [0, " + std::to_string(windows_) + ")");
  const int64_t begin = index * body_;
  const int64_t count = std::min(body_, stream_->size() - begin);
  std::string bytes(static_cast<size_t>(count), '\0');
  stream_->read(begin, count, bytes.data());
  auto ids = torch::full({options_.length}, byte_vocab::kPad, torch::kInt64);
  auto mask = torch::zeros({options_.length}, torch::kInt64);
  auto* p = ids.data_ptr<int64_t>();
  int64_t j = 0;
  if (options_.add_cls_sep) p[j++] = byte_vocab::kCls;
  for (const char c : bytes) p[j++] = byte_vocab::byte_to_id(static_cast<unsigned char>(c));
  if (options_.add_cls_sep) p[j++] = byte_vocab::kSep;
  mask.narrow(0, 0, j).fill_(1);
  return {{"input_ids", ids}, {"attention_mask", mask}};
}

}  // namespace perceiver::datasets
