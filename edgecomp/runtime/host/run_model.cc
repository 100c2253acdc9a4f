// edgecomp's C++ host: runs an artifact's model.so (a Relax VM executable) with params.bin on raw inputs.
//
// usage: run_model MODEL.so PARAMS.bin DIR
//
// DIR/request.txt (written by edgecomp.runtime.qemu), whitespace-separated:
//   edgecomp-run 1
//   runs R inputs K
//   DTYPE NDIM D0 D1 ...          (K lines: each input's dtype string, e.g. float32, and shape)
// DIR/in-<r>-<k>.bin holds input k of run r as raw little-endian C-order bytes.
// For every run r the host calls main(in-r-0, ..., in-r-(K-1), p0, ..., pN-1) and writes each output j
// (a tuple result is flattened depth-first) to DIR/out-<r>-<j>.bin, and one line per output to
// DIR/outputs.txt: "r j DTYPE NDIM D0 D1 ...". Exit status 0 on success; on failure, 2 and one line on stderr.
//
// params.bin is tvm.runtime.save_param_dict_to_file({"p0": ..., "p1": ...}), read back with the runtime's
// own "runtime.LoadParamsFromFile", so the Python writer and this reader share one format.
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/dtype.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;

namespace {

struct AlignedCPUAlloc {  // 64-byte aligned host memory, as TVM's own CPU allocator gives
  void AllocData(DLTensor* t) {
    size_t bytes = (ffi::GetDataSize(*t) + 63) / 64 * 64;
    t->data = std::aligned_alloc(64, bytes > 0 ? bytes : 64);
    if (t->data == nullptr) throw std::runtime_error("out of memory allocating an input tensor");
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

struct InputSpec {
  DLDataType dtype;
  std::vector<int64_t> shape;
};

std::vector<InputSpec> ReadRequest(const std::string& dir, int* runs) {
  std::ifstream f(dir + "/request.txt");
  std::string magic, word;
  int version = 0, k = 0;
  if (!(f >> magic >> version) || magic != "edgecomp-run" || version != 1)
    throw std::runtime_error(dir + "/request.txt is not an edgecomp-run 1 request");
  if (!(f >> word >> *runs) || word != "runs" || !(f >> word >> k) || word != "inputs")
    throw std::runtime_error("request.txt: expected 'runs R inputs K'");
  std::vector<InputSpec> specs(k);
  for (InputSpec& s : specs) {
    std::string dtype;
    int ndim = 0;
    if (!(f >> dtype >> ndim)) throw std::runtime_error("request.txt: expected 'DTYPE NDIM dims...'");
    s.dtype = ffi::StringToDLDataType(dtype);
    s.shape.resize(ndim);
    for (int64_t& d : s.shape) f >> d;
  }
  if (!f) throw std::runtime_error("request.txt is truncated");
  return specs;
}

ffi::Tensor ReadInput(const std::string& path, const InputSpec& spec) {
  ffi::Tensor t = ffi::Tensor::FromNDAlloc(AlignedCPUAlloc(), ffi::Shape(spec.shape), spec.dtype,
                                           DLDevice{kDLCPU, 0});
  size_t bytes = ffi::GetDataSize(*t.GetDLTensorPtr());
  std::ifstream f(path, std::ios::binary);
  f.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(bytes));
  if (!f || f.peek() != EOF) throw std::runtime_error(path + ": size does not match its dtype and shape");
  return t;
}

void Flatten(const ffi::Any& value, std::vector<ffi::Tensor>* out) {
  if (auto t = value.as<ffi::Tensor>()) {
    out->push_back(*t);
  } else if (auto arr = value.as<ffi::Array<ffi::Any>>()) {
    for (const ffi::Any& item : *arr) Flatten(item, out);
  } else {
    throw std::runtime_error("main returned something that is neither a tensor nor a tuple of tensors");
  }
}

void WriteOutput(const std::string& dir, int run, size_t j, const ffi::Tensor& y, std::ofstream& index) {
  const DLTensor& t = *y.GetDLTensorPtr();
  if (t.device.device_type != kDLCPU || !ffi::IsContiguous(t))
    throw std::runtime_error("output " + std::to_string(j) + " is not a contiguous CPU tensor");
  std::string path = dir + "/out-" + std::to_string(run) + "-" + std::to_string(j) + ".bin";
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(t.data) + t.byte_offset, static_cast<std::streamsize>(ffi::GetDataSize(t)));
  if (!f) throw std::runtime_error("cannot write " + path);
  index << run << ' ' << j << ' ' << std::string(ffi::DLDataTypeToString(t.dtype)) << ' ' << t.ndim;
  for (int i = 0; i < t.ndim; ++i) index << ' ' << t.shape[i];
  index << '\n';
}

int Run(const std::string& model, const std::string& params_path, const std::string& dir) {
  int runs = 0;
  std::vector<InputSpec> specs = ReadRequest(dir, &runs);

  ffi::Module lib = ffi::Module::LoadFromFile(model);
  ffi::Module vm = lib->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
  // (device type, device id, allocator: 2 = pooled) for the compute device, then for the host
  vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, 2, static_cast<int>(kDLCPU), 0, 2);
  ffi::Function main_fn = vm->GetFunction("main").value();

  ffi::Function load = ffi::Function::GetGlobalRequired("runtime.LoadParamsFromFile");
  auto params = load(params_path).cast<ffi::Map<ffi::String, ffi::Tensor>>();
  std::vector<ffi::Tensor> ordered;  // main's parameters come in the order p0, p1, ...
  for (size_t i = 0; i < params.size(); ++i) ordered.push_back(params.at("p" + std::to_string(i)));

  std::ofstream index(dir + "/outputs.txt");
  for (int r = 0; r < runs; ++r) {
    std::vector<ffi::Any> args;
    for (size_t k = 0; k < specs.size(); ++k)
      args.push_back(ReadInput(dir + "/in-" + std::to_string(r) + "-" + std::to_string(k) + ".bin", specs[k]));
    for (const ffi::Tensor& p : ordered) args.push_back(p);
    std::vector<ffi::AnyView> views(args.begin(), args.end());
    ffi::Any out;
    main_fn.CallPacked(views.data(), static_cast<int32_t>(views.size()), &out);
    std::vector<ffi::Tensor> outs;
    Flatten(out, &outs);
    for (size_t j = 0; j < outs.size(); ++j) WriteOutput(dir, r, j, outs[j], index);
  }
  index.close();
  if (!index) throw std::runtime_error("cannot write " + dir + "/outputs.txt");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s MODEL.so PARAMS.bin DIR (see the header of run_model.cc)\n", argv[0]);
    return 2;
  }
  try {
    return Run(argv[1], argv[2], argv[3]);
  } catch (const std::exception& e) {
    std::string msg = e.what();  // TVM errors span several lines (traceback): keep the first one
    std::fprintf(stderr, "run_model: %s\n", msg.substr(0, msg.find('\n')).c_str());
    return 2;
  }
}
