// The zip container of torch.save checkpoints, checked before anything is extracted.
#pragma once

#include <caffe2/serialize/read_adapter_interface.h>

#include <string>

namespace perceiver::io {

// Walks the archive's central directory (zip64 included) and throws, naming `name`, unless every
// record is stored uncompressed (torch.save never compresses) with a size that fits in the file: a
// record can then never make the extractor allocate more than the file holds (no zip bombs).
void check_stored_records(const caffe2::serialize::ReadAdapterInterface& in, const std::string& name);

}  // namespace perceiver::io
