/* edgecomp.h: the C API of an edgecomp bundle (one compiled model, its weights and the TVM runtime).
 *
 * Plain C99; no C++ type crosses this boundary. Every function that can fail returns an edgecomp_status
 * (EDGECOMP_OK = 0) and never aborts: null pointers, out-of-range indices, a wrong shape, dtype or byte
 * count, a missing or corrupt file and any error inside the runtime come back as a status, with one line
 * of explanation in edgecomp_last_error().
 *
 * Typical use (error handling shortened; see example/main.c in the bundle for a complete program):
 *
 *   edgecomp_model* m = NULL;
 *   if (edgecomp_open("path/to/bundle", &m) != EDGECOMP_OK) { puts(edgecomp_last_error()); return 1; }
 *   edgecomp_tensor_info in;
 *   edgecomp_input_info(m, 0, &in);                      // name, dtype, ndim, shape, nbytes
 *   edgecomp_set_input(m, 0, in.dtype, in.shape, in.ndim, pixels, in.nbytes);
 *   edgecomp_run(m);
 *   edgecomp_tensor_info out;
 *   edgecomp_output_info(m, 0, &out);
 *   edgecomp_get_output(m, 0, logits, out.nbytes);
 *   edgecomp_close(m);
 *
 * Threads: a model handle is used by one thread at a time; separate handles are independent.
 * edgecomp_last_error() is per thread. The runtime's own thread pool size follows TVM_NUM_THREADS.
 * Stability: this header's functions, structs and enum values only grow; EDGECOMP_API_VERSION counts
 * incompatible changes.
 */
#ifndef EDGECOMP_H_
#define EDGECOMP_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EDGECOMP_API_VERSION 1

#if defined(__GNUC__)
#define EDGECOMP_API __attribute__((visibility("default")))
#else
#define EDGECOMP_API
#endif

typedef enum {
  EDGECOMP_OK = 0,
  EDGECOMP_ERR_ARGUMENT = 1, /* a null pointer, an index out of range, an unknown name */
  EDGECOMP_ERR_SHAPE = 2,    /* an input's shape (or rank) differs from the model's */
  EDGECOMP_ERR_DTYPE = 3,    /* an input's dtype differs from the model's */
  EDGECOMP_ERR_SIZE = 4,     /* a buffer's byte count differs from what the tensor needs */
  EDGECOMP_ERR_FILE = 5,     /* a bundle file is missing, unreadable or malformed */
  EDGECOMP_ERR_RUNTIME = 6,  /* the TVM runtime failed (loading the library, running the model) */
  EDGECOMP_ERR_STATE = 7,    /* an output was read before a successful edgecomp_run */
  EDGECOMP_ERR_VALUE = 8     /* an index input (token ids) holds a value outside its table */
} edgecomp_status;

typedef enum {
  EDGECOMP_FLOAT32 = 0,
  EDGECOMP_FLOAT16 = 1,
  EDGECOMP_INT64 = 2,
  EDGECOMP_INT32 = 3,
  EDGECOMP_INT8 = 4,
  EDGECOMP_UINT8 = 5,
  EDGECOMP_BOOL = 6
} edgecomp_dtype;

/* A tensor's signature. The pointers stay valid until edgecomp_close of the model they came from. */
typedef struct {
  const char* name;     /* the model's input / output name */
  edgecomp_dtype dtype;
  int32_t ndim;
  const int64_t* shape; /* ndim dimensions, static */
  size_t nbytes;        /* bytes of one tensor in C order: product(shape) * edgecomp_dtype_size(dtype) */
} edgecomp_tensor_info;

typedef struct edgecomp_model edgecomp_model; /* opaque */

/* Open the model in a bundle directory: BUNDLE/lib/model.so, BUNDLE/params.bin, BUNDLE/model.txt.
 * On success *out is a handle for edgecomp_close; on failure *out is NULL. A missing, truncated or damaged
 * params.bin or model.txt is EDGECOMP_ERR_FILE (both are checked before the runtime reads them). */
EDGECOMP_API edgecomp_status edgecomp_open(const char* bundle_dir, edgecomp_model** out);

/* Open from explicit paths: the model library, its weights and its signature file (model.txt). */
EDGECOMP_API edgecomp_status edgecomp_open_files(const char* model_lib, const char* params_bin,
                                                 const char* signature_txt, edgecomp_model** out);

/* Open the model linked into this program (the bundle's static/model.o, built with `edgecomp package
 * --static`) with its weights and signature file; EDGECOMP_ERR_RUNTIME when no model is linked in.
 * One model per program: its functions are registered under fixed names. */
EDGECOMP_API edgecomp_status edgecomp_open_static(const char* params_bin, const char* signature_txt,
                                                  edgecomp_model** out);

/* Release a handle and everything it owns; NULL, a handle closed already and a pointer that never was a
 * handle are ignored. Every other function refuses a closed handle with EDGECOMP_ERR_ARGUMENT (until a new
 * handle happens to get the same address). */
EDGECOMP_API void edgecomp_close(edgecomp_model* model);

/* Counts of inputs / outputs, or -1 when model is NULL or not an open handle. */
EDGECOMP_API int32_t edgecomp_num_inputs(const edgecomp_model* model);
EDGECOMP_API int32_t edgecomp_num_outputs(const edgecomp_model* model);

/* The signature of input / output `index` (0-based). */
EDGECOMP_API edgecomp_status edgecomp_input_info(const edgecomp_model* model, int32_t index,
                                                 edgecomp_tensor_info* info);
EDGECOMP_API edgecomp_status edgecomp_output_info(const edgecomp_model* model, int32_t index,
                                                  edgecomp_tensor_info* info);

/* The index of the input / output called `name`, in *index. */
EDGECOMP_API edgecomp_status edgecomp_input_index(const edgecomp_model* model, const char* name, int32_t* index);
EDGECOMP_API edgecomp_status edgecomp_output_index(const edgecomp_model* model, const char* name,
                                                   int32_t* index);

/* Copy one input in: `dtype`, `shape` (ndim dims) and `nbytes` must equal the input's signature, otherwise
 * EDGECOMP_ERR_DTYPE / _SHAPE / _SIZE and nothing is copied. `data` is C-order, native byte order. An input
 * that indexes a table (token ids; "range LO HI" in model.txt) must hold values in [LO, HI), otherwise
 * EDGECOMP_ERR_VALUE: the compiled lookup does not check bounds. */
EDGECOMP_API edgecomp_status edgecomp_set_input(edgecomp_model* model, int32_t index, edgecomp_dtype dtype,
                                                const int64_t* shape, int32_t ndim, const void* data,
                                                size_t nbytes);

/* Run the model on the inputs set so far (an input never set is all zeros). */
EDGECOMP_API edgecomp_status edgecomp_run(edgecomp_model* model);

/* Copy output `index` of the last successful run into `data`; `nbytes` must equal its signature's nbytes. */
EDGECOMP_API edgecomp_status edgecomp_get_output(const edgecomp_model* model, int32_t index, void* data,
                                                 size_t nbytes);

/* One line describing the last failure of an edgecomp call on this thread ("" if none yet). The pointer
 * stays valid until the next failing call on this thread. */
EDGECOMP_API const char* edgecomp_last_error(void);

/* "float32", "int64", ...; NULL for a value outside edgecomp_dtype. */
EDGECOMP_API const char* edgecomp_dtype_name(edgecomp_dtype dtype);

/* Bytes per element; 0 for a value outside edgecomp_dtype. */
EDGECOMP_API size_t edgecomp_dtype_size(edgecomp_dtype dtype);

/* EDGECOMP_API_VERSION of the library (compare with the header's, to catch a mismatched libedgecomp.so). */
EDGECOMP_API int32_t edgecomp_api_version(void);

#ifdef __cplusplus
}
#endif

#endif /* EDGECOMP_H_ */
