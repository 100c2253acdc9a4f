// libedgecomp: the C API of include/edgecomp.h over the TVM runtime (tvm-ffi + the Relax VM).
//
// A model is three files: the model library (a Relax VM executable + kernels, model.so), its weights
// (params.bin, tvm.runtime.save_param_dict_to_file of p0..pN-1) and its signature (model.txt, written by
// `edgecomp package`):
//   edgecomp-model 1
//   params N
//   inputs K
//   NAME DTYPE NDIM D0 D1 ... [range LO HI]     (K lines)
//   outputs J
//   NAME DTYPE NDIM D0 D1 ...                   (J lines)
// "range LO HI" marks an integer input whose values index a table (token ids): edgecomp_set_input refuses
// a value outside [LO, HI), which the compiled gather would read out of bounds.
// The model's entry point is main(input0, ..., inputK-1, p0, ..., pN-1); a tuple result is flattened
// depth-first into the J outputs.
//
// The static variant links the model into the program (static/model.o: the same model compiled as a TVM
// "system lib", whose objects register their functions at start-up); edgecomp_open_static finds it there.
//
// Contract at the boundary: every exported function catches every C++ exception and turns it (and every
// argument it rejects) into an edgecomp_status plus a one-line message for edgecomp_last_error(); nothing
// here calls abort or exit. Handles are registered while open, so a closed (or never opened) handle passed
// back in is refused with EDGECOMP_ERR_ARGUMENT instead of being dereferenced, and a second close is a
// no-op. params.bin is walked with bounds checks before the TVM runtime reads it (its reader trusts the
// counts and sizes in the file), and model.txt's counts and dims are bounded before anything is allocated.
#include "edgecomp.h"

#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/dtype.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <new>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

namespace ffi = tvm::ffi;

namespace {

thread_local std::string last_error;

// An error that already knows its status; anything else thrown below is EDGECOMP_ERR_RUNTIME.
struct Failure {
  edgecomp_status status;
  std::string message;
};

[[noreturn]] void Fail(edgecomp_status status, const std::string& message) { throw Failure{status, message}; }

edgecomp_status Report(edgecomp_status status, const std::string& message) {
  last_error = message.substr(0, message.find('\n'));  // TVM messages may carry a traceback: keep line one
  return status;
}

// Run `body` (returning edgecomp_status) with every exception turned into a status and a message.
template <typename F>
edgecomp_status Guard(const char* fn, F&& body) {
  try {
    return body();
  } catch (const Failure& f) {
    return Report(f.status, std::string(fn) + ": " + f.message);
  } catch (const ffi::Error& e) {
    return Report(EDGECOMP_ERR_RUNTIME, std::string(fn) + ": " + e.kind() + ": " + e.message());
  } catch (const std::bad_alloc&) {
    return Report(EDGECOMP_ERR_RUNTIME, std::string(fn) + ": out of memory");
  } catch (const std::exception& e) {
    return Report(EDGECOMP_ERR_RUNTIME, std::string(fn) + ": " + e.what());
  } catch (...) {
    return Report(EDGECOMP_ERR_RUNTIME, std::string(fn) + ": unknown C++ exception");
  }
}

struct DTypeEntry {
  edgecomp_dtype dtype;
  const char* name;
  DLDataType dl;
};

const DTypeEntry kDTypes[] = {
    {EDGECOMP_FLOAT32, "float32", {kDLFloat, 32, 1}}, {EDGECOMP_FLOAT16, "float16", {kDLFloat, 16, 1}},
    {EDGECOMP_INT64, "int64", {kDLInt, 64, 1}},       {EDGECOMP_INT32, "int32", {kDLInt, 32, 1}},
    {EDGECOMP_INT8, "int8", {kDLInt, 8, 1}},          {EDGECOMP_UINT8, "uint8", {kDLUInt, 8, 1}},
    {EDGECOMP_BOOL, "bool", {kDLBool, 8, 1}},
};

// A C caller may pass any int as an edgecomp_dtype, but in C++ reading an enum outside its declared range is
// undefined (UBSan: "load of value 4294967295, which is not a valid value for type 'edgecomp_dtype'"), so a
// dtype argument is read through its bytes as an int and compared as one.
int DTypeCode(const edgecomp_dtype& dtype) {
  int code;
  static_assert(sizeof(code) == sizeof(dtype), "edgecomp_dtype is int-sized");
  std::memcpy(&code, &dtype, sizeof code);
  return code;
}

const DTypeEntry* FindDType(int code) {
  for (const DTypeEntry& e : kDTypes)
    if (static_cast<int>(e.dtype) == code) return &e;
  return nullptr;
}

const DTypeEntry* FindDType(const std::string& name) {
  for (const DTypeEntry& e : kDTypes)
    if (name == e.name) return &e;
  return nullptr;
}

struct Signature {
  std::string name;
  const DTypeEntry* dtype = nullptr;
  std::vector<int64_t> shape;
  size_t nbytes = 0;
  bool ranged = false;  // values must lie in [lo, hi)
  int64_t lo = 0, hi = 0;
};

std::string ShapeString(const int64_t* shape, int32_t ndim) {
  std::ostringstream s;
  s << '[';
  for (int32_t i = 0; i < ndim; ++i) s << (i ? ", " : "") << shape[i];
  s << ']';
  return s.str();
}

struct AlignedCPUAlloc {  // 64-byte aligned, zeroed host memory
  void AllocData(DLTensor* t) {
    size_t bytes = (ffi::GetDataSize(*t) + 63) / 64 * 64;
    if (bytes == 0) bytes = 64;
    t->data = std::aligned_alloc(64, bytes);
    if (t->data == nullptr) throw std::bad_alloc();
    std::memset(t->data, 0, bytes);
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

// Bounds on model.txt, checked before anything is allocated from it.
constexpr int kMaxTensors = 4096;
constexpr int64_t kMaxDim = int64_t{1} << 31;
constexpr size_t kMaxTensorBytes = size_t{1} << 36;  // 64 GiB: far beyond any edge model's tensor

std::vector<Signature> ReadTensors(std::istream& f, const char* section, const std::string& path) {
  std::string line, word;
  int count = -1;
  while (std::getline(f, line) && line.find_first_not_of(" \t\r") == std::string::npos) {
  }
  std::istringstream head(line);
  if (!(head >> word >> count) || word != section || count < 0 || count > kMaxTensors)
    Fail(EDGECOMP_ERR_FILE, path + ": expected '" + section + " COUNT' (COUNT <= " + std::to_string(kMaxTensors) +
                                ")");
  std::vector<Signature> sigs(count);
  for (Signature& s : sigs) {
    std::string dtype;
    int ndim = -1;
    std::getline(f, line);
    std::istringstream in(line);
    if (!(in >> s.name >> dtype >> ndim) || ndim < 0 || ndim > 16)
      Fail(EDGECOMP_ERR_FILE, path + ": expected 'NAME DTYPE NDIM dims...' in the " + section + " section");
    s.dtype = FindDType(dtype);
    if (s.dtype == nullptr) Fail(EDGECOMP_ERR_FILE, path + ": unsupported dtype '" + dtype + "' of " + s.name);
    s.shape.resize(ndim);
    size_t elems = 1;
    for (int64_t& d : s.shape) {
      if (!(in >> d) || d < 0 || d > kMaxDim) Fail(EDGECOMP_ERR_FILE, path + ": bad shape of " + s.name);
      elems *= static_cast<size_t>(d);  // d <= 2^31 and the running product is bounded below: no overflow
      if (elems > kMaxTensorBytes) Fail(EDGECOMP_ERR_FILE, path + ": " + s.name + " is absurdly large");
    }
    s.nbytes = elems * (s.dtype->dl.bits / 8);
    if (in >> word) {
      bool integer = s.dtype->dl.code == kDLInt && (s.dtype->dl.bits == 64 || s.dtype->dl.bits == 32);
      if (word != "range" || !(in >> s.lo >> s.hi) || s.lo >= s.hi || !integer)
        Fail(EDGECOMP_ERR_FILE, path + ": bad 'range LO HI' of " + s.name);
      s.ranged = true;
    }
  }
  return sigs;
}

// EDGECOMP_ERR_VALUE for the first element of `data` outside the input's range (int32 / int64 inputs only).
template <typename T>
void CheckRange(const Signature& s, const void* data) {
  const T* v = static_cast<const T*>(data);
  for (size_t i = 0; i < s.nbytes / sizeof(T); ++i) {
    if (v[i] < s.lo || v[i] >= s.hi)
      Fail(EDGECOMP_ERR_VALUE, "input '" + s.name + "' element " + std::to_string(i) + " is " +
                                   std::to_string(v[i]) + ", outside [" + std::to_string(s.lo) + ", " +
                                   std::to_string(s.hi) + ") (it indexes a table)");
  }
}

void RequireFile(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) Fail(EDGECOMP_ERR_FILE, std::string("cannot open ") + what + " " + path);
}

// params.bin (runtime.SaveParams): u64 list magic, u64 reserved, u64 n + n names (u64 length + bytes), u64 n,
// then n tensors: u64 tensor magic, u64 reserved, i32 device type, i32 device id, i32 ndim, u8 code, u8 bits,
// u16 lanes, i64 shape[ndim], i64 byte count, the bytes. Walked with bounds checks (edgecomp/params_file.py
// does the same in Python) so a truncated or damaged file is EDGECOMP_ERR_FILE, not the runtime's problem.
class ParamsWalker {
 public:
  ParamsWalker(std::string data, std::string path) : data_(std::move(data)), path_(std::move(path)) {}

  template <typename T>
  T Take(const char* what) {
    if (data_.size() - pos_ < sizeof(T)) Bad(std::string("it ends inside ") + what);
    T v;
    std::memcpy(&v, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  void Skip(uint64_t n, const char* what) {
    if (n > data_.size() - pos_) Bad(std::string(what) + " runs past the end of the file");
    pos_ += static_cast<size_t>(n);
  }
  std::string Name(uint64_t n) {
    Skip(n, "a name");
    return data_.substr(pos_ - n, n);
  }
  bool AtEnd() const { return pos_ == data_.size(); }
  [[noreturn]] void Bad(const std::string& why) const {
    Fail(EDGECOMP_ERR_FILE, path_ + " is not a valid params file: " + why);
  }

 private:
  std::string data_, path_;
  size_t pos_ = 0;
};

void CheckParamsFile(const std::string& path, int nparams) {
  std::ifstream f(path, std::ios::binary);
  if (!f) Fail(EDGECOMP_ERR_FILE, "cannot open the weights " + path);
  ParamsWalker w(std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()), path);
  if (w.Take<uint64_t>("the header") != 0xF7E58D4F05049CB7ULL) w.Bad("wrong magic number");
  w.Take<uint64_t>("the header");
  uint64_t n = w.Take<uint64_t>("the name count");
  if (n != static_cast<uint64_t>(nparams))
    w.Bad("it names " + std::to_string(n) + " tensors, the signature says " + std::to_string(nparams));
  for (uint64_t i = 0; i < n; ++i)
    if (w.Name(w.Take<uint64_t>("a name length")) != "p" + std::to_string(i)) w.Bad("tensors are not p0..pN");
  if (w.Take<uint64_t>("the tensor count") != n) w.Bad("the tensor count differs from the name count");
  for (uint64_t i = 0; i < n; ++i) {
    if (w.Take<uint64_t>("a tensor header") != 0xDD5E40F096B4A13FULL) w.Bad("a tensor has a wrong magic number");
    w.Take<uint64_t>("a tensor header");
    int32_t device = w.Take<int32_t>("a tensor header");
    w.Take<int32_t>("a tensor header");
    int32_t ndim = w.Take<int32_t>("a tensor header");
    uint8_t code = w.Take<uint8_t>("a tensor header"), bits = w.Take<uint8_t>("a tensor header");
    uint16_t lanes = w.Take<uint16_t>("a tensor header");
    if (device != kDLCPU || ndim < 0 || ndim > 16 || lanes != 1 || code > kDLBool ||
        (bits != 1 && bits != 8 && bits != 16 && bits != 32 && bits != 64))
      w.Bad("tensor p" + std::to_string(i) + " has a malformed header");
    uint64_t elems = 1;
    for (int32_t k = 0; k < ndim; ++k) {
      int64_t d = w.Take<int64_t>("a tensor shape");
      if (d < 0 || d > kMaxDim) w.Bad("tensor p" + std::to_string(i) + " has a bad shape");
      elems *= static_cast<uint64_t>(d);
      if (elems > kMaxTensorBytes) w.Bad("tensor p" + std::to_string(i) + " is absurdly large");
    }
    int64_t size = w.Take<int64_t>("a tensor byte count");
    if (size < 0 || static_cast<uint64_t>(size) != elems * ((bits + 7u) / 8u))
      w.Bad("tensor p" + std::to_string(i) + "'s byte count does not match its shape");
    w.Skip(static_cast<uint64_t>(size), "a tensor's data");
  }
  if (!w.AtEnd()) w.Bad("bytes follow the last tensor");
}

void Flatten(const ffi::Any& value, std::vector<ffi::Tensor>* out) {
  if (auto t = value.as<ffi::Tensor>()) {
    out->push_back(*t);
  } else if (auto arr = value.as<ffi::Array<ffi::Any>>()) {
    for (const ffi::Any& item : *arr) Flatten(item, out);
  } else {
    Fail(EDGECOMP_ERR_RUNTIME, "main returned something that is neither a tensor nor a tuple of tensors");
  }
}

}  // namespace

struct edgecomp_model {
  std::vector<Signature> inputs, outputs;
  ffi::Optional<ffi::Module> lib, vm;  // set by Load
  ffi::Function main_fn;
  std::vector<ffi::Tensor> input_tensors, params, results;  // results: empty until a run succeeds
};

namespace {

// lib_path "" = the model linked into this program (system lib), else a model library to load.
edgecomp_model* Load(const std::string& lib_path, const std::string& params_path, const std::string& sig_path) {
  std::ifstream f(sig_path);
  if (!f) Fail(EDGECOMP_ERR_FILE, "cannot open the signature file " + sig_path);
  std::string magic, word;
  int version = 0, nparams = -1;
  if (!(f >> magic >> version) || magic != "edgecomp-model" || version != 1)
    Fail(EDGECOMP_ERR_FILE, sig_path + " is not an 'edgecomp-model 1' signature");
  if (!(f >> word >> nparams) || word != "params" || nparams < 0)
    Fail(EDGECOMP_ERR_FILE, sig_path + ": expected 'params N'");
  std::getline(f, word);  // the rest of the line; tensor lines are read whole
  std::unique_ptr<edgecomp_model> m(new edgecomp_model());
  m->inputs = ReadTensors(f, "inputs", sig_path);
  m->outputs = ReadTensors(f, "outputs", sig_path);

  if (!lib_path.empty()) RequireFile(lib_path, "the model library");
  CheckParamsFile(params_path, nparams);
  ffi::Module lib = lib_path.empty() ? ffi::Function::GetGlobalRequired("ffi.SystemLib")().cast<ffi::Module>()
                                     : ffi::Module::LoadFromFile(lib_path);
  auto loader = lib->GetFunction("vm_load_executable");
  if (!loader)
    Fail(EDGECOMP_ERR_RUNTIME, lib_path.empty() ? "no model is linked into this program (static/model.o)"
                                                : lib_path + " holds no Relax VM executable (vm_load_executable)");
  ffi::Module vm = loader.value()().cast<ffi::Module>();
  // (device type, device id, allocator: 2 = pooled) for the compute device, then for the host
  vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, 2, static_cast<int>(kDLCPU), 0, 2);
  m->lib = lib;
  m->vm = vm;
  auto main_fn = vm->GetFunction("main");
  if (!main_fn) Fail(EDGECOMP_ERR_RUNTIME, lib_path + " has no function 'main'");
  m->main_fn = main_fn.value();

  auto params = ffi::Function::GetGlobalRequired("runtime.LoadParamsFromFile")(params_path)
                    .cast<ffi::Map<ffi::String, ffi::Tensor>>();
  if (params.size() != static_cast<size_t>(nparams))
    Fail(EDGECOMP_ERR_FILE, params_path + " holds " + std::to_string(params.size()) + " tensors, " + sig_path +
                                " says " + std::to_string(nparams));
  for (int i = 0; i < nparams; ++i) {
    auto it = params.find("p" + std::to_string(i));
    if (it == params.end()) Fail(EDGECOMP_ERR_FILE, params_path + " has no tensor p" + std::to_string(i));
    m->params.push_back((*it).second);
  }
  for (const Signature& s : m->inputs)
    m->input_tensors.push_back(
        ffi::Tensor::FromNDAlloc(AlignedCPUAlloc(), ffi::Shape(s.shape), s.dtype->dl, DLDevice{kDLCPU, 0}));
  return m.release();
}

// The open handles. Every entry point taking a model checks it is here, so a closed handle is refused, not
// dereferenced (a new handle may reuse a closed one's address; then it is simply that new, valid handle).
std::mutex registry_mutex;
std::unordered_set<const edgecomp_model*>& Registry() {
  static auto* live = new std::unordered_set<const edgecomp_model*>();  // never destroyed: no exit-order issue
  return *live;
}

bool Live(const edgecomp_model* m) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  return m != nullptr && Registry().count(m) > 0;
}

void RequireLive(const edgecomp_model* m, const char* what = "model") {
  if (m == nullptr) Fail(EDGECOMP_ERR_ARGUMENT, std::string(what) + " is NULL");
  if (!Live(m)) Fail(EDGECOMP_ERR_ARGUMENT, std::string(what) + " is not an open handle (closed already?)");
}

// lib nullptr: the system lib (edgecomp_open_static).
edgecomp_status Open(const char* fn, const char* lib, const char* params, const char* sig, edgecomp_model** out,
                     bool system_lib = false) {
  if (out != nullptr) *out = nullptr;
  return Guard(fn, [&] {
    if (out == nullptr) Fail(EDGECOMP_ERR_ARGUMENT, "out is NULL");
    if ((lib == nullptr && !system_lib) || params == nullptr || sig == nullptr)
      Fail(EDGECOMP_ERR_ARGUMENT, "a path is NULL");
    edgecomp_model* m = Load(system_lib ? "" : lib, params, sig);
    std::lock_guard<std::mutex> lock(registry_mutex);
    Registry().insert(m);
    *out = m;
    return EDGECOMP_OK;
  });
}

const std::vector<Signature>& Side(const edgecomp_model* m, bool input) { return input ? m->inputs : m->outputs; }

edgecomp_status Info(const char* fn, const edgecomp_model* m, int32_t index, edgecomp_tensor_info* info,
                     bool input) {
  return Guard(fn, [&] {
    RequireLive(m);
    if (info == nullptr) Fail(EDGECOMP_ERR_ARGUMENT, "info is NULL");
    const std::vector<Signature>& sigs = Side(m, input);
    if (index < 0 || static_cast<size_t>(index) >= sigs.size())
      Fail(EDGECOMP_ERR_ARGUMENT, "index " + std::to_string(index) + " is out of range (the model has " +
                                      std::to_string(sigs.size()) + (input ? " inputs)" : " outputs)"));
    const Signature& s = sigs[index];
    info->name = s.name.c_str();
    info->dtype = s.dtype->dtype;
    info->ndim = static_cast<int32_t>(s.shape.size());
    info->shape = s.shape.data();
    info->nbytes = s.nbytes;
    return EDGECOMP_OK;
  });
}

edgecomp_status Index(const char* fn, const edgecomp_model* m, const char* name, int32_t* index, bool input) {
  return Guard(fn, [&] {
    RequireLive(m);
    if (name == nullptr || index == nullptr) Fail(EDGECOMP_ERR_ARGUMENT, "name or index is NULL");
    const std::vector<Signature>& sigs = Side(m, input);
    for (size_t i = 0; i < sigs.size(); ++i) {
      if (sigs[i].name == name) {
        *index = static_cast<int32_t>(i);
        return EDGECOMP_OK;
      }
    }
    Fail(EDGECOMP_ERR_ARGUMENT, std::string("the model has no ") + (input ? "input" : "output") + " '" + name + "'");
  });
}

}  // namespace

extern "C" {

edgecomp_status edgecomp_open(const char* bundle_dir, edgecomp_model** out) {
  if (bundle_dir == nullptr) {
    if (out != nullptr) *out = nullptr;
    return Report(EDGECOMP_ERR_ARGUMENT, "edgecomp_open: bundle_dir is NULL");
  }
  std::string d(bundle_dir);
  return Open("edgecomp_open", (d + "/lib/model.so").c_str(), (d + "/params.bin").c_str(),
              (d + "/model.txt").c_str(), out);
}

edgecomp_status edgecomp_open_files(const char* model_lib, const char* params_bin, const char* signature_txt,
                                    edgecomp_model** out) {
  return Open("edgecomp_open_files", model_lib, params_bin, signature_txt, out);
}

edgecomp_status edgecomp_open_static(const char* params_bin, const char* signature_txt, edgecomp_model** out) {
  return Open("edgecomp_open_static", nullptr, params_bin, signature_txt, out, true);
}

void edgecomp_close(edgecomp_model* model) {
  try {
    {
      std::lock_guard<std::mutex> lock(registry_mutex);
      if (Registry().erase(model) == 0) return;  // NULL, closed already or never opened: nothing to free
    }
    delete model;
  } catch (...) {  // destructors of runtime objects should not throw; if one does, leak rather than abort
  }
}

int32_t edgecomp_num_inputs(const edgecomp_model* model) {
  return Live(model) ? static_cast<int32_t>(model->inputs.size()) : -1;
}

int32_t edgecomp_num_outputs(const edgecomp_model* model) {
  return Live(model) ? static_cast<int32_t>(model->outputs.size()) : -1;
}

edgecomp_status edgecomp_input_info(const edgecomp_model* model, int32_t index, edgecomp_tensor_info* info) {
  return Info("edgecomp_input_info", model, index, info, true);
}

edgecomp_status edgecomp_output_info(const edgecomp_model* model, int32_t index, edgecomp_tensor_info* info) {
  return Info("edgecomp_output_info", model, index, info, false);
}

edgecomp_status edgecomp_input_index(const edgecomp_model* model, const char* name, int32_t* index) {
  return Index("edgecomp_input_index", model, name, index, true);
}

edgecomp_status edgecomp_output_index(const edgecomp_model* model, const char* name, int32_t* index) {
  return Index("edgecomp_output_index", model, name, index, false);
}

edgecomp_status edgecomp_set_input(edgecomp_model* model, int32_t index, edgecomp_dtype dtype,
                                   const int64_t* shape, int32_t ndim, const void* data, size_t nbytes) {
  return Guard("edgecomp_set_input", [&] {
    RequireLive(model);
    if (data == nullptr) Fail(EDGECOMP_ERR_ARGUMENT, "data is NULL");
    if (index < 0 || static_cast<size_t>(index) >= model->inputs.size())
      Fail(EDGECOMP_ERR_ARGUMENT, "input index " + std::to_string(index) + " is out of range (the model has " +
                                      std::to_string(model->inputs.size()) + " inputs)");
    const Signature& s = model->inputs[index];
    if (ndim < 0 || (ndim > 0 && shape == nullptr)) Fail(EDGECOMP_ERR_ARGUMENT, "shape is NULL or ndim < 0");
    const int code = DTypeCode(dtype);
    const DTypeEntry* given = FindDType(code);
    if (given != s.dtype)
      Fail(EDGECOMP_ERR_DTYPE, "input '" + s.name + "' has dtype " + s.dtype->name + ", got " +
                                   (given ? given->name : "an unknown dtype (" + std::to_string(code) + ")"));
    std::string expected = ShapeString(s.shape.data(), static_cast<int32_t>(s.shape.size()));
    if (static_cast<size_t>(ndim) != s.shape.size())  // do not read a caller's shape array past its rank
      Fail(EDGECOMP_ERR_SHAPE, "input '" + s.name + "' has shape " + expected + ", got rank " +
                                   std::to_string(ndim) + " (shapes are static)");
    bool same = true;
    for (int32_t i = 0; same && i < ndim; ++i) same = shape[i] == s.shape[i];
    if (!same)
      Fail(EDGECOMP_ERR_SHAPE, "input '" + s.name + "' has shape " + expected + ", got " + ShapeString(shape, ndim) +
                                   " (shapes are static)");
    if (nbytes != s.nbytes)
      Fail(EDGECOMP_ERR_SIZE, "input '" + s.name + "' takes " + std::to_string(s.nbytes) + " bytes, got " +
                                  std::to_string(nbytes));
    if (s.ranged && s.dtype->dl.bits == 64) CheckRange<int64_t>(s, data);
    if (s.ranged && s.dtype->dl.bits == 32) CheckRange<int32_t>(s, data);
    std::memcpy(model->input_tensors[index].data_ptr(), data, nbytes);
    return EDGECOMP_OK;
  });
}

edgecomp_status edgecomp_run(edgecomp_model* model) {
  return Guard("edgecomp_run", [&] {
    RequireLive(model);
    model->results.clear();
    std::vector<ffi::AnyView> args;
    for (const ffi::Tensor& t : model->input_tensors) args.emplace_back(t);
    for (const ffi::Tensor& p : model->params) args.emplace_back(p);
    ffi::Any out;
    model->main_fn.CallPacked(args.data(), static_cast<int32_t>(args.size()), &out);
    std::vector<ffi::Tensor> results;
    Flatten(out, &results);
    if (results.size() != model->outputs.size())
      Fail(EDGECOMP_ERR_RUNTIME, "main returned " + std::to_string(results.size()) + " outputs, the signature has " +
                                     std::to_string(model->outputs.size()));
    for (size_t j = 0; j < results.size(); ++j) {
      const DLTensor& t = *results[j].GetDLTensorPtr();
      const Signature& s = model->outputs[j];
      bool same = t.device.device_type == kDLCPU && ffi::IsContiguous(t) && ffi::GetDataSize(t) == s.nbytes &&
                  t.dtype.code == s.dtype->dl.code && t.dtype.bits == s.dtype->dl.bits &&
                  static_cast<size_t>(t.ndim) == s.shape.size();
      for (int i = 0; same && i < t.ndim; ++i) same = t.shape[i] == s.shape[i];
      if (!same)
        Fail(EDGECOMP_ERR_RUNTIME, "output " + std::to_string(j) + " (" + s.name +
                                       ") does not match its signature: is model.txt from another model?");
    }
    model->results = std::move(results);
    return EDGECOMP_OK;
  });
}

edgecomp_status edgecomp_get_output(const edgecomp_model* model, int32_t index, void* data, size_t nbytes) {
  return Guard("edgecomp_get_output", [&] {
    RequireLive(model);
    if (data == nullptr) Fail(EDGECOMP_ERR_ARGUMENT, "data is NULL");
    if (index < 0 || static_cast<size_t>(index) >= model->outputs.size())
      Fail(EDGECOMP_ERR_ARGUMENT, "output index " + std::to_string(index) + " is out of range (the model has " +
                                      std::to_string(model->outputs.size()) + " outputs)");
    if (model->results.empty()) Fail(EDGECOMP_ERR_STATE, "no successful edgecomp_run yet");
    const Signature& s = model->outputs[index];
    if (nbytes != s.nbytes)
      Fail(EDGECOMP_ERR_SIZE, "output '" + s.name + "' has " + std::to_string(s.nbytes) + " bytes, the buffer " +
                                  std::to_string(nbytes));
    const DLTensor& t = *model->results[index].GetDLTensorPtr();
    std::memcpy(data, static_cast<const char*>(t.data) + t.byte_offset, nbytes);
    return EDGECOMP_OK;
  });
}

const char* edgecomp_last_error(void) { return last_error.c_str(); }

const char* edgecomp_dtype_name(edgecomp_dtype dtype) {
  const DTypeEntry* e = FindDType(DTypeCode(dtype));
  return e ? e->name : nullptr;
}

size_t edgecomp_dtype_size(edgecomp_dtype dtype) {
  const DTypeEntry* e = FindDType(DTypeCode(dtype));
  return e ? e->dl.bits / 8 : 0;
}

int32_t edgecomp_api_version(void) { return EDGECOMP_API_VERSION; }

}  // extern "C"
