#include "perceiver/io/torch_bin.h"

#include <caffe2/serialize/file_adapter.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "perceiver/io/zip_records.h"
#include "perceiver/io/json_io.h"

namespace perceiver::io {
namespace {

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw std::runtime_error("torch checkpoint '" + source + "': " + what);
}

// ---- A restricted unpickler: just what torch.save(state_dict) emits. -------------------------

enum class Global { OrderedDict, RebuildTensorV2, RebuildParameter, StorageType };

struct Value;
using ValuePtr = std::shared_ptr<Value>;

struct Value {
  enum class Kind { None, Bool, Int, Float, String, Tuple, List, Dict, Global, Storage, Tensor };
  Kind kind = Kind::None;
  int depth = 0;           // nesting depth, bounded so that destruction cannot overflow the stack
  bool contained = false;  // placed inside another container: frozen from then on (keeps depth exact, no cycles)
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;                                    // String; dotted name of a Global
  std::vector<ValuePtr> items;                      // Tuple, List
  std::vector<std::pair<ValuePtr, ValuePtr>> dict;  // Dict, in insertion order
  Global global = Global::OrderedDict;
  torch::ScalarType dtype = torch::kFloat;  // StorageType global, Storage
  c10::Storage storage;                     // Storage
  int64_t numel = 0;                        // Storage
  torch::Tensor tensor;                     // Tensor
};

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::None: return "None";
    case Value::Kind::Bool: return "bool";
    case Value::Kind::Int: return "int";
    case Value::Kind::Float: return "float";
    case Value::Kind::String: return "str";
    case Value::Kind::Tuple: return "tuple";
    case Value::Kind::List: return "list";
    case Value::Kind::Dict: return "dict";
    case Value::Kind::Global: return "global";
    case Value::Kind::Storage: return "storage";
    case Value::Kind::Tensor: return "tensor";
  }
  return "?";
}

ValuePtr new_value(Value::Kind kind) {
  auto v = std::make_shared<Value>();
  v->kind = kind;
  return v;
}

struct StorageName {
  const char* name;
  torch::ScalarType dtype;
};
constexpr StorageName kStorageTypes[] = {
    {"FloatStorage", torch::kFloat32}, {"DoubleStorage", torch::kFloat64}, {"HalfStorage", torch::kFloat16},
    {"BFloat16Storage", torch::kBFloat16}, {"LongStorage", torch::kInt64}, {"IntStorage", torch::kInt32},
    {"ShortStorage", torch::kInt16},   {"CharStorage", torch::kInt8},     {"ByteStorage", torch::kUInt8},
    {"BoolStorage", torch::kBool},
};

constexpr int kMaxDepth = 512;
// Far above what a state dict needs (about 15 objects per tensor: 70,000 tensors), far below what
// exhausts memory (each object costs about 170 bytes whatever its opcode's size: 180 MB at most).
constexpr size_t kMaxObjects = size_t{1} << 20;
constexpr size_t kMaxStack = size_t{1} << 18;  // also MARKs; Python's pickler batches items by 1,000

// Loads the storage record `key` holding `numel` elements of `dtype`.
using StorageLoader = std::function<c10::Storage(const std::string& key, torch::ScalarType dtype, int64_t numel)>;

class Unpickler {
 public:
  Unpickler(const std::string& source, const uint8_t* data, size_t size, StorageLoader load_storage)
      : source_(source), data_(data), size_(size), load_storage_(std::move(load_storage)) {}

  ValuePtr run() {
    while (true) {
      const size_t at = pos_;
      const uint8_t op = u8();
      try {
        if (op == '.') {  // STOP
          if (stack_.size() != 1 || !marks_.empty()) error(at, "STOP with a malformed stack");
          return stack_.back();
        }
        step(op, at);
      } catch (const std::bad_alloc&) {
        error(at, "out of memory");
      }
    }
  }

 private:
  [[noreturn]] void error(size_t at, const std::string& what) const {
    fail(source_, "data.pkl at byte " + std::to_string(at) + ": " + what);
  }

  void need(size_t n) const {
    if (n > size_ - pos_) error(pos_, "unexpected end of pickle (truncated data.pkl?)");
  }
  uint8_t u8() {
    need(1);
    return data_[pos_++];
  }
  uint64_t le(size_t n) {
    need(n);
    uint64_t v = 0;
    for (size_t k = n; k-- > 0;) v = (v << 8) | data_[pos_ + k];
    pos_ += n;
    return v;
  }
  std::string bytes(uint64_t n) {
    if (n > size_ - pos_) error(pos_, "string of " + std::to_string(n) + " bytes runs past the end of the pickle");
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }
  std::string line() {
    const size_t start = pos_;
    while (pos_ < size_ && data_[pos_] != '\n') ++pos_;
    if (pos_ == size_) error(start, "unterminated GLOBAL name");
    std::string s(reinterpret_cast<const char*>(data_ + start), pos_ - start);
    ++pos_;
    return s;
  }

  void push(ValuePtr v) {
    if (stack_.size() >= kMaxStack) error(pos_, "more than " + std::to_string(kMaxStack) + " values on the pickle stack");
    stack_.push_back(std::move(v));
  }
  // Every value the pickle creates goes through here, so their number is bounded.
  ValuePtr make(Value::Kind kind) {
    if (++objects_ > kMaxObjects)
      error(pos_, "the pickle creates more than " + std::to_string(kMaxObjects) + " objects (not a state dict)");
    return new_value(kind);
  }
  ValuePtr pop(size_t at) {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) error(at, "stack underflow");
    ValuePtr v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  ValuePtr& top(size_t at) {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) error(at, "stack underflow");
    return stack_.back();
  }
  std::vector<ValuePtr> pop_mark(size_t at) {
    if (marks_.empty()) error(at, "no MARK on the stack");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(m)),
                                std::make_move_iterator(stack_.end()));
    stack_.resize(m);
    return items;
  }

  void add_child_depth(Value& parent, Value& child, size_t at) {
    if (&parent == &child) error(at, "a container cannot contain itself");
    child.contained = true;
    parent.depth = std::max(parent.depth, child.depth + 1);
    if (parent.depth > kMaxDepth) error(at, "containers nested deeper than " + std::to_string(kMaxDepth));
  }
  ValuePtr tuple(std::vector<ValuePtr> items, size_t at) {
    auto t = make(Value::Kind::Tuple);
    for (const auto& v : items) add_child_depth(*t, *v, at);
    t->items = std::move(items);
    return t;
  }
  ValuePtr integer(int64_t i) {
    auto v = make(Value::Kind::Int);
    v->i = i;
    return v;
  }
  ValuePtr string(std::string s) {
    auto v = make(Value::Kind::String);
    v->s = std::move(s);
    return v;
  }

  void memo_put(uint64_t index, size_t at) {
    if (memo_.size() >= kMaxObjects && !memo_.count(index))
      error(at, "more than " + std::to_string(kMaxObjects) + " memo entries");
    memo_[index] = top(at);
  }
  void memo_get(uint64_t index, size_t at) {
    const auto it = memo_.find(index);
    if (it == memo_.end()) error(at, "memo entry " + std::to_string(index) + " was never stored");
    push(it->second);
  }

  void set_item(Value& dict, ValuePtr key, ValuePtr value, size_t at) {
    if (dict.kind != Value::Kind::Dict) error(at, std::string("SETITEM on a ") + kind_name(dict.kind));
    if (dict.contained) error(at, "SETITEM on a dict that is already nested in another container");
    add_child_depth(dict, *key, at);
    add_child_depth(dict, *value, at);
    dict.dict.emplace_back(std::move(key), std::move(value));
  }

  ValuePtr global(const std::string& module, const std::string& name, size_t at) {
    auto g = make(Value::Kind::Global);
    g->s = module + "." + name;
    if (module == "collections" && name == "OrderedDict") {
      g->global = Global::OrderedDict;
    } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
      g->global = Global::RebuildTensorV2;
    } else if (module == "torch._utils" && name == "_rebuild_parameter") {
      g->global = Global::RebuildParameter;
    } else {
      bool found = false;
      if (module == "torch") {
        for (const auto& st : kStorageTypes) {
          if (name == st.name) {
            g->global = Global::StorageType;
            g->dtype = st.dtype;
            found = true;
          }
        }
      }
      if (!found)
        error(at, "refusing GLOBAL '" + module + " " + name +
                      "': only collections.OrderedDict, torch._utils._rebuild_tensor_v2/_rebuild_parameter and "
                      "torch.*Storage types are allowed in a state dict");
    }
    return g;
  }

  static int64_t as_int(const ValuePtr& v, const char* what, const Unpickler& self, size_t at) {
    if (v->kind != Value::Kind::Int) self.error(at, std::string(what) + " must be an int, found " + kind_name(v->kind));
    return v->i;
  }
  std::vector<int64_t> int_tuple(const ValuePtr& v, const char* what, size_t at) const {
    if (v->kind != Value::Kind::Tuple) error(at, std::string(what) + " must be a tuple, found " + kind_name(v->kind));
    std::vector<int64_t> out;
    for (const auto& e : v->items) {
      const int64_t x = as_int(e, what, *this, at);
      if (x < 0) error(at, std::string(what) + " has a negative entry " + std::to_string(x));
      out.push_back(x);
    }
    return out;
  }

  // storage persistent id: ('storage', StorageType, key, location, numel)
  ValuePtr persistent_load(const ValuePtr& pid, size_t at) {
    const auto& t = pid->items;
    if (pid->kind != Value::Kind::Tuple || t.size() != 5 || t[0]->kind != Value::Kind::String ||
        t[0]->s != "storage" || t[1]->kind != Value::Kind::Global || t[1]->global != Global::StorageType ||
        t[2]->kind != Value::Kind::String || t[3]->kind != Value::Kind::String || t[4]->kind != Value::Kind::Int)
      error(at, "persistent id is not ('storage', torch.<Type>Storage, key, location, numel)");
    const std::string& key = t[2]->s;
    const int64_t numel = t[4]->i;
    if (numel < 0) error(at, "storage '" + key + "' has negative size " + std::to_string(numel));
    const auto it = storages_.find(key);
    if (it != storages_.end()) {
      if (it->second->dtype != t[1]->dtype || it->second->numel != numel)
        error(at, "storage '" + key + "' is referenced with two different types or sizes");
      return it->second;
    }
    auto s = make(Value::Kind::Storage);
    s->dtype = t[1]->dtype;
    s->numel = numel;
    s->storage = load_storage_(key, s->dtype, numel);
    s->s = key;
    storages_.emplace(key, s);
    return s;
  }

  // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  ValuePtr rebuild_tensor(const ValuePtr& args, size_t at) {
    const auto& a = args->items;
    if (a.size() != 6 && a.size() != 7)
      error(at, "_rebuild_tensor_v2 expects 6 or 7 arguments, got " + std::to_string(a.size()));
    if (a[0]->kind != Value::Kind::Storage)
      error(at, std::string("_rebuild_tensor_v2 argument 0 must be a storage, found ") + kind_name(a[0]->kind));
    const Value& storage = *a[0];
    const int64_t offset = as_int(a[1], "storage offset", *this, at);
    const auto sizes = int_tuple(a[2], "tensor size", at);
    const auto strides = int_tuple(a[3], "tensor stride", at);
    if (sizes.size() != strides.size())
      error(at, "tensor size and stride have different lengths (" + std::to_string(sizes.size()) + " vs " +
                    std::to_string(strides.size()) + ")");
    if (offset < 0 || offset > storage.numel)
      error(at, "storage offset " + std::to_string(offset) + " outside storage '" + storage.s + "' of " +
                    std::to_string(storage.numel) + " elements");
    // The element count must fit int64, and the furthest element addressed must lie inside the
    // storage; both are bounded dimension by dimension before anything is multiplied.
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    int64_t numel = 1;
    for (const int64_t size : sizes) {
      if (size != 0 && numel > kMax / size) error(at, "tensor size " + c10::str(c10::IntArrayRef(sizes)) + " overflows");
      numel *= size;
    }
    int64_t last = offset;
    for (size_t d = 0; d < sizes.size() && numel > 0; ++d) {
      const int64_t span = sizes[d] - 1;  // sizes are positive here
      if (strides[d] != 0 && span > (storage.numel - 1 - last) / strides[d])
        error(at, "tensor view (offset " + std::to_string(offset) + ", size " + c10::str(c10::IntArrayRef(sizes)) +
                      ", stride " + c10::str(c10::IntArrayRef(strides)) + ") reaches past the end of storage '" +
                      storage.s + "' of " + std::to_string(storage.numel) + " elements");
      last += span * strides[d];
    }
    if (numel > 0 && last >= storage.numel)
      error(at, "tensor view (offset " + std::to_string(offset) + ") reaches past the end of storage '" + storage.s +
                    "' of " + std::to_string(storage.numel) + " elements");
    auto v = make(Value::Kind::Tensor);
    v->tensor = torch::empty({0}, torch::TensorOptions().dtype(storage.dtype)).set_(storage.storage, offset, sizes, strides);
    return v;
  }

  ValuePtr reduce(const ValuePtr& callable, const ValuePtr& args, size_t at) {
    if (callable->kind != Value::Kind::Global)
      error(at, std::string("REDUCE on a ") + kind_name(callable->kind) + ", not a callable");
    if (args->kind != Value::Kind::Tuple) error(at, "REDUCE arguments are not a tuple");
    switch (callable->global) {
      case Global::OrderedDict:
        if (!args->items.empty()) error(at, "OrderedDict(...) with arguments is not supported");
        return make(Value::Kind::Dict);
      case Global::RebuildTensorV2:
        return rebuild_tensor(args, at);
      case Global::RebuildParameter:  // (data, requires_grad, backward_hooks)
        if (args->items.size() != 3 || args->items[0]->kind != Value::Kind::Tensor)
          error(at, "_rebuild_parameter expects (tensor, requires_grad, backward_hooks)");
        return args->items[0];
      case Global::StorageType:
        break;
    }
    error(at, "calling '" + callable->s + "' is not allowed");
  }

  void step(uint8_t op, size_t at) {
    switch (op) {
      case 0x80: {  // PROTO
        const uint8_t version = u8();
        if (version > 5) error(at, "unsupported pickle protocol " + std::to_string(version));
        break;
      }
      case 0x95: le(8); break;  // FRAME: framing is only a read-ahead hint
      case '(':
        if (marks_.size() >= kMaxStack) error(at, "more than " + std::to_string(kMaxStack) + " MARKs");
        marks_.push_back(stack_.size());
        break;
      case ')': push(make(Value::Kind::Tuple)); break;
      case ']': push(make(Value::Kind::List)); break;
      case '}': push(make(Value::Kind::Dict)); break;
      case 'N': push(make(Value::Kind::None)); break;
      case 0x88:
      case 0x89: {
        auto v = make(Value::Kind::Bool);
        v->b = op == 0x88;
        push(v);
        break;
      }
      case 'J': push(integer(static_cast<int32_t>(static_cast<uint32_t>(le(4))))); break;
      case 'K': push(integer(static_cast<int64_t>(le(1)))); break;
      case 'M': push(integer(static_cast<int64_t>(le(2)))); break;
      case 0x8a: {  // LONG1: little-endian two's complement of n bytes
        const uint8_t n = u8();
        if (n > 8) error(at, "integer of " + std::to_string(n) + " bytes does not fit int64");
        uint64_t raw = n ? le(n) : 0;
        if (n > 0 && n < 8 && (raw >> (8 * n - 1)) & 1) raw |= ~uint64_t{0} << (8 * n);  // sign-extend
        push(integer(static_cast<int64_t>(raw)));
        break;
      }
      case 'G': {  // BINFLOAT: big-endian double
        need(8);
        uint64_t raw = 0;
        for (int k = 0; k < 8; ++k) raw = (raw << 8) | data_[pos_ + k];
        pos_ += 8;
        auto v = make(Value::Kind::Float);
        std::memcpy(&v->f, &raw, sizeof raw);
        push(v);
        break;
      }
      case 'X': push(string(bytes(le(4)))); break;   // BINUNICODE
      case 0x8c: push(string(bytes(le(1)))); break;  // SHORT_BINUNICODE
      case 0x8d: push(string(bytes(le(8)))); break;  // BINUNICODE8
      case 'U': push(string(bytes(le(1)))); break;   // SHORT_BINSTRING
      case 'T': {                                    // BINSTRING
        const auto n = static_cast<int32_t>(static_cast<uint32_t>(le(4)));
        if (n < 0) error(at, "negative string length");
        push(string(bytes(static_cast<uint64_t>(n))));
        break;
      }
      case 'q': memo_put(le(1), at); break;                   // BINPUT
      case 'r': memo_put(le(4), at); break;                   // LONG_BINPUT
      case 0x94: memo_put(memo_.size(), at); break;           // MEMOIZE
      case 'h': memo_get(le(1), at); break;                   // BINGET
      case 'j': memo_get(le(4), at); break;                   // LONG_BINGET
      case 't': push(tuple(pop_mark(at), at)); break;         // TUPLE
      case 0x85:                                              // TUPLE1..3
      case 0x86:
      case 0x87: {
        std::vector<ValuePtr> items(static_cast<size_t>(op - 0x84));
        for (size_t k = items.size(); k-- > 0;) items[k] = pop(at);
        push(tuple(std::move(items), at));
        break;
      }
      case 'c': {  // GLOBAL
        const std::string module = line();
        const std::string name = line();
        push(global(module, name, at));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        const ValuePtr name = pop(at), module = pop(at);
        if (name->kind != Value::Kind::String || module->kind != Value::Kind::String)
          error(at, "STACK_GLOBAL needs two strings");
        push(global(module->s, name->s, at));
        break;
      }
      case 'Q': {  // BINPERSID
        const ValuePtr pid = pop(at);
        push(persistent_load(pid, at));
        break;
      }
      case 'R': {  // REDUCE
        const ValuePtr args = pop(at);
        const ValuePtr callable = pop(at);
        push(reduce(callable, args, at));
        break;
      }
      case 's': {  // SETITEM
        ValuePtr value = pop(at);
        ValuePtr key = pop(at);
        set_item(*top(at), std::move(key), std::move(value), at);
        break;
      }
      case 'u': {  // SETITEMS
        auto items = pop_mark(at);
        if (items.size() % 2) error(at, "SETITEMS with an odd number of items");
        Value& dict = *top(at);
        for (size_t k = 0; k < items.size(); k += 2) set_item(dict, items[k], items[k + 1], at);
        break;
      }
      case 'a':  // APPEND
      case 'e': {  // APPENDS
        std::vector<ValuePtr> items;
        if (op == 'a')
          items.push_back(pop(at));
        else
          items = pop_mark(at);
        Value& list = *top(at);
        if (list.kind != Value::Kind::List) error(at, std::string("APPEND to a ") + kind_name(list.kind));
        if (list.contained) error(at, "APPEND to a list that is already nested in another container");
        for (auto& v : items) {
          add_child_depth(list, *v, at);
          list.items.push_back(std::move(v));
        }
        break;
      }
      case 'b': {  // BUILD: only the OrderedDict's attributes (state_dict._metadata), which are dropped
        const ValuePtr state = pop(at);
        if (top(at)->kind != Value::Kind::Dict)
          error(at, std::string("BUILD on a ") + kind_name(top(at)->kind) + " is not supported");
        break;
      }
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        error(at, std::string("unsupported pickle opcode ") + hex +
                      (op >= 0x20 && op < 0x7f ? std::string(" ('") + static_cast<char>(op) + "')" : std::string()));
      }
    }
  }

  const std::string& source_;
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  StorageLoader load_storage_;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, ValuePtr> memo_;
  std::unordered_map<std::string, ValuePtr> storages_;
  size_t objects_ = 0;
};

void check_bool_bytes(const std::string& source, const std::string& key, const uint8_t* p, size_t n) {
  for (size_t k = 0; k < n; ++k)
    if (p[k] > 1) fail(source, "bool storage '" + key + "' holds byte " + std::to_string(p[k]) + " (not 0 or 1)");
}

TensorMap load_zip(const std::shared_ptr<caffe2::serialize::ReadAdapterInterface>& in, const std::string& source) {
  const StoredZip zip(in, source);
  if (!zip.has("data.pkl")) fail(source, "archive has no data.pkl record (not a torch.save checkpoint?)");
  uint64_t pkl_size = 0;
  const auto pkl = zip.read("data.pkl", &pkl_size);

  StorageLoader load_storage = [&](const std::string& key, torch::ScalarType dtype, int64_t numel) {
    const std::string record = "data/" + key;
    if (!zip.has(record)) fail(source, "storage record '" + record + "' is missing from the archive");
    uint64_t size = 0;
    auto ptr = zip.read(record, &size);
    const size_t item = c10::elementSize(dtype);
    if (static_cast<uint64_t>(numel) > std::numeric_limits<uint64_t>::max() / item ||
        size < static_cast<uint64_t>(numel) * item)
      fail(source, "storage record '" + record + "' has " + std::to_string(size) + " bytes, expected " +
                       std::to_string(numel) + " elements of " + std::to_string(item) + " bytes");
    const size_t nbytes = static_cast<size_t>(numel) * item;
    if (dtype == torch::kBool) check_bool_bytes(source, key, static_cast<const uint8_t*>(ptr.get()), nbytes);
    // The record's buffer becomes the storage: no further copy.
    return c10::Storage(c10::Storage::use_byte_size_t(), nbytes, std::move(ptr), nullptr, /*resizable=*/false);
  };

  Unpickler unpickler(source, static_cast<const uint8_t*>(pkl.get()), static_cast<size_t>(pkl_size), load_storage);
  const ValuePtr root = unpickler.run();
  if (root->kind != Value::Kind::Dict)
    fail(source, std::string("top-level object is a ") + kind_name(root->kind) + ", expected a state dict");
  TensorMap out;
  for (const auto& [key, value] : root->dict) {
    if (key->kind != Value::Kind::String)
      fail(source, std::string("state dict key is a ") + kind_name(key->kind) + ", expected str");
    if (value->kind != Value::Kind::Tensor)
      fail(source, "state dict entry '" + excerpt(key->s, 200) + "' is a " + kind_name(value->kind) + ", expected a tensor");
    out[key->s] = value->tensor;
  }
  return out;
}

// Reads from a buffer, never past its end (caffe2's MemoryReadAdapter does not check).
class BufferAdapter final : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit BufferAdapter(std::string_view bytes) : bytes_(bytes) {}
  size_t size() const override { return bytes_.size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= bytes_.size()) return 0;
    n = std::min<size_t>(n, bytes_.size() - pos);
    if (n > 0) std::memcpy(buf, bytes_.data() + pos, n);
    return n;
  }

 private:
  std::string_view bytes_;
};

// Checks the magic bytes, then loads; every error names `source`.
TensorMap load_checked(std::string_view magic, const std::string& source,
                       const std::function<std::shared_ptr<caffe2::serialize::ReadAdapterInterface>()>& open) {
  if (magic.size() < 4) fail(source, "file is " + std::to_string(magic.size()) + " bytes, too short for a zip archive");
  if (magic.compare(0, 2, "PK") != 0) {
    if (static_cast<uint8_t>(magic[0]) == 0x80)
      fail(source, "legacy (torch < 1.6) non-zip torch.save format is not supported; re-save it with a newer torch");
    fail(source, "not a zip archive (bad magic bytes)");
  }
  try {
    return load_zip(open(), source);
  } catch (const c10::Error& e) {  // from the file adapter
    fail(source, std::string("cannot read: ") + e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    fail(source, "out of memory (corrupt record sizes?)");
  }
}

std::string read_magic(const std::filesystem::path& file, size_t n) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open checkpoint '" + file.string() + "'");
  std::string magic(n, '\0');
  in.read(magic.data(), static_cast<std::streamsize>(n));
  magic.resize(static_cast<size_t>(in.gcount()));
  return magic;
}

}  // namespace

TensorMap load_torch_bin(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) fail(file.string(), "no such file (or not a regular file)");
  return load_checked(read_magic(file, 4), file.string(),
                      [&] { return std::make_shared<caffe2::serialize::FileAdapter>(file.string()); });
}

TensorMap parse_torch_bin(std::string_view bytes, const std::string& name) {
  return load_checked(bytes.substr(0, 4), name, [&] { return std::make_shared<BufferAdapter>(bytes); });
}

TensorMap load_state_dict(const std::filesystem::path& file_or_dir) {
  std::error_code ec;
  if (std::filesystem::is_directory(file_or_dir, ec)) {
    for (const char* name : {"model.safetensors", "pytorch_model.bin"})
      if (std::filesystem::is_regular_file(file_or_dir / name, ec)) return load_state_dict(file_or_dir / name);
    throw std::runtime_error("directory '" + file_or_dir.string() +
                             "' has neither model.safetensors nor pytorch_model.bin");
  }
  if (!std::filesystem::is_regular_file(file_or_dir, ec))
    throw std::runtime_error("checkpoint '" + file_or_dir.string() + "' does not exist");
  const std::string magic = read_magic(file_or_dir, 4);
  if (magic.size() >= 2 && (magic.compare(0, 2, "PK") == 0 || static_cast<uint8_t>(magic[0]) == 0x80))
    return load_torch_bin(file_or_dir);
  return load_safetensors(file_or_dir);
}

}  // namespace perceiver::io
