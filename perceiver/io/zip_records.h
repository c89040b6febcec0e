// The zip container of torch.save checkpoints, read without an extractor: torch.save stores its
// records uncompressed, so a record is a byte range of the file. Nothing is allocated before the
// central directory, every local header and every size have been checked against the file.
#pragma once

#include <ATen/core/TensorBody.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <caffe2/serialize/read_adapter_interface.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace perceiver::io {

class StoredZip {
 public:
  // Walks the central directory (zip64 included); throws, naming `name`, for a compressed record
  // (torch.save never compresses), a size or offset outside the file, a duplicate or malformed entry.
  StoredZip(std::shared_ptr<caffe2::serialize::ReadAdapterInterface> in, std::string name);

  // Records are named relative to the archive's top folder ("data.pkl", "data/0"), as torch.load does.
  bool has(const std::string& record) const;
  // The record's bytes in CPU memory (CRC-32 checked); throws naming the record when it is missing.
  c10::DataPtr read(const std::string& record, uint64_t* size) const;

 private:
  struct Record {
    uint64_t local_header = 0, size = 0;
    uint32_t crc = 0;
  };
  std::shared_ptr<caffe2::serialize::ReadAdapterInterface> in_;
  std::string name_;
  std::string prefix_;  // "<top folder>/"
  std::map<std::string, Record> records_;
};

}  // namespace perceiver::io
