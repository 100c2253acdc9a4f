/* Abuse of edgecomp.h: every call below must return a status (and a message), never crash, abort or touch
 * memory it does not own (the test builds this with -fsanitize=address,undefined on x86).
 *
 * usage: capi_abuse MODEL_LIB PARAMS_BIN MODEL_TXT SCRATCH_DIR
 *   (a model whose input 0 is float32 of rank >= 1; SCRATCH_DIR is writable, for damaged copies of the files)
 * Prints one line per case: "CASE STATUS MESSAGE" (STATUS an edgecomp_status number, or a count / 0-1 flag
 * for the cases named *_count / *_same), then "done".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgecomp.h"

static void report(const char* name, int status) { printf("%s %d %s\n", name, status, edgecomp_last_error()); }

static char* slurp(const char* path, size_t* n) {
  FILE* f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char* buf = (char*)malloc((size_t)size + 1);
  *n = fread(buf, 1, (size_t)size, f);
  fclose(f);
  return buf;
}

static void spit(const char* path, const char* data, size_t n) {
  FILE* f = fopen(path, "wb");
  fwrite(data, 1, n, f);
  fclose(f);
}

/* Open lib + (params, sig) and report the status; close whatever opened. */
static void try_open(const char* name, const char* lib, const char* params, const char* sig) {
  edgecomp_model* m = NULL;
  report(name, edgecomp_open_files(lib, params, sig, &m));
  edgecomp_close(m);
}

/* Run the model on `x` (input 0, the rest zeros) and copy output 0 into `y`. */
static int run_once(edgecomp_model* m, const void* x, void* y) {
  edgecomp_tensor_info in, out;
  if (edgecomp_input_info(m, 0, &in) || edgecomp_output_info(m, 0, &out)) return -1;
  int s = edgecomp_set_input(m, 0, in.dtype, in.shape, in.ndim, x, in.nbytes);
  if (s == 0) s = edgecomp_run(m);
  if (s == 0) s = edgecomp_get_output(m, 0, y, out.nbytes);
  return s;
}

int main(int argc, char** argv) {
  if (argc != 5) return 2;
  const char *lib = argv[1], *params = argv[2], *sig = argv[3], *dir = argv[4];
  char path[4096], path2[4096];
  size_t np = 0, ns = 0;
  char* pbytes = slurp(params, &np);
  char* sbytes = slurp(sig, &ns);
  if (!pbytes || !sbytes) return 3;

  /* files: missing, truncated or damaged params, lying signatures */
  try_open("open_missing_library", "/nonexistent/model.so", params, sig);
  try_open("open_missing_params", lib, "/nonexistent/params.bin", sig);
  try_open("open_null_library", NULL, params, sig);
  snprintf(path, sizeof path, "%s/params-empty.bin", dir);
  spit(path, pbytes, 0);
  try_open("params_empty", lib, path, sig);
  size_t cuts[] = {7, 16, 40, np / 2, np - 1};
  const char* cut_names[] = {"params_cut_7", "params_cut_16", "params_cut_40", "params_cut_half", "params_cut_last"};
  for (int i = 0; i < 5; ++i) {
    snprintf(path, sizeof path, "%s/params-cut.bin", dir);
    spit(path, pbytes, cuts[i]);
    try_open(cut_names[i], lib, path, sig);
  }
  char* damaged = (char*)malloc(np + 8);
  memcpy(damaged, pbytes, np);
  memset(damaged + 16, 0xff, 8); /* the name count: 2^64 - 1 */
  snprintf(path, sizeof path, "%s/params-count.bin", dir);
  spit(path, damaged, np);
  try_open("params_huge_count", lib, path, sig);
  memcpy(damaged, pbytes, np);
  memcpy(damaged + np, "trailing", 8);
  spit(path, damaged, np + 8);
  try_open("params_trailing_bytes", lib, path, sig);
  memcpy(damaged, pbytes, np);
  damaged[0] ^= 0x5a;
  spit(path, damaged, np);
  try_open("params_bad_magic", lib, path, sig);

  const char* sigs[][2] = {
      {"sig_huge_input_count", "edgecomp-model 1\nparams 0\ninputs 2000000000\n"},
      {"sig_huge_dims", "edgecomp-model 1\nparams 0\ninputs 1\nx float32 3 4611686018427387904 4 4\noutputs 0\n"},
      {"sig_overflowing_dims", "edgecomp-model 1\nparams 0\ninputs 1\nx float32 4 2147483648 2147483648 2147483648 "
                               "2147483648\noutputs 0\n"},
      {"sig_negative_dim", "edgecomp-model 1\nparams 0\ninputs 1\nx float32 2 -1 4\noutputs 0\n"},
      {"sig_bad_version", "edgecomp-model 9\nparams 0\ninputs 0\noutputs 0\n"},
      {"sig_empty", ""},
  };
  for (int i = 0; i < 6; ++i) {
    snprintf(path, sizeof path, "%s/sig-%d.txt", dir, i);
    spit(path, sigs[i][1], strlen(sigs[i][1]));
    try_open(sigs[i][0], lib, params, path);
  }
  /* a signature whose params count lies */
  snprintf(path, sizeof path, "%s/sig-params.txt", dir);
  {
    char* lie = (char*)malloc(ns + 16);
    const char* rest = strstr(sbytes, "inputs");
    int k = snprintf(lie, ns + 16, "edgecomp-model 1\nparams 999\n");
    memcpy(lie + k, rest, ns - (size_t)(rest - sbytes));
    spit(path, lie, (size_t)k + ns - (size_t)(rest - sbytes));
    free(lie);
  }
  try_open("sig_params_count_lies", lib, params, path);

  /* a live model: nulls, bad indices, shapes, dtypes, sizes */
  edgecomp_model* m = NULL;
  if (edgecomp_open_files(lib, params, sig, &m) != EDGECOMP_OK) {
    report("open", 1);
    return 1;
  }
  edgecomp_tensor_info in, out;
  edgecomp_input_info(m, 0, &in);
  edgecomp_output_info(m, 0, &out);
  float* x = (float*)calloc(1, in.nbytes + 64);
  float* y1 = (float*)calloc(1, out.nbytes + 64);
  float* y2 = (float*)calloc(1, out.nbytes + 64);
  for (size_t i = 0; i < in.nbytes / sizeof(float); ++i) x[i] = (float)(i % 7) - 3.0f;
  int64_t one = 1;
  int32_t idx = 0;
  report("index_null_name", edgecomp_input_index(m, NULL, &idx));
  report("index_null_out", edgecomp_output_index(m, "x", NULL));
  report("info_int32_max", edgecomp_input_info(m, INT32_MAX, &in));
  report("set_rank_huge", edgecomp_set_input(m, 0, in.dtype, &one, 1000, x, in.nbytes)); /* must not read 1000 */
  report("set_rank_negative", edgecomp_set_input(m, 0, in.dtype, in.shape, -1, x, in.nbytes));
  report("set_dtype_negative", edgecomp_set_input(m, 0, (edgecomp_dtype)-1, in.shape, in.ndim, x, in.nbytes));
  report("set_nbytes_zero", edgecomp_set_input(m, 0, in.dtype, in.shape, in.ndim, x, 0));
  report("set_nbytes_max", edgecomp_set_input(m, 0, in.dtype, in.shape, in.ndim, x, SIZE_MAX));
  report("set_index_max", edgecomp_set_input(m, INT32_MAX, in.dtype, in.shape, in.ndim, x, in.nbytes));
  report("get_index_negative", edgecomp_get_output(m, -1, y1, out.nbytes));
  report("get_null_data", edgecomp_get_output(m, 0, NULL, out.nbytes));
  report("dtype_name_invalid", edgecomp_dtype_name((edgecomp_dtype)42) == NULL ? 0 : 1);
  report("dtype_size_invalid", (int)edgecomp_dtype_size((edgecomp_dtype)-3));
  report("run_inputs_never_set", edgecomp_run(m)); /* all-zero inputs: fine */
  report("first_run", run_once(m, x, y1));
  report("set_short_nbytes", edgecomp_set_input(m, 0, in.dtype, in.shape, in.ndim, x, 3));

  /* two handles at once, then use after close, double close, reopen */
  edgecomp_model* m2 = NULL;
  report("second_handle", edgecomp_open_files(lib, params, sig, &m2));
  report("second_handle_run", run_once(m2, x, y2));
  printf("second_handle_same %d\n", memcmp(y1, y2, out.nbytes) == 0);
  edgecomp_close(m);
  report("closed_run", edgecomp_run(m));
  report("closed_set_input", edgecomp_set_input(m, 0, in.dtype, in.shape, in.ndim, x, in.nbytes));
  report("closed_get_output", edgecomp_get_output(m, 0, y2, out.nbytes));
  report("closed_output_info", edgecomp_output_info(m, 0, &out));
  printf("closed_num_inputs_count %d\n", edgecomp_num_inputs(m));
  edgecomp_close(m); /* a second close: ignored */
  edgecomp_close((edgecomp_model*)&one); /* never a handle: ignored */
  report("never_opened_run", edgecomp_run((edgecomp_model*)&one));
  edgecomp_model* again = NULL;
  report("reopen", edgecomp_open_files(lib, params, sig, &again));
  edgecomp_output_info(again, 0, &out);
  memset(y2, 0, out.nbytes);
  report("reopen_run", run_once(again, x, y2));
  printf("reopen_same %d\n", memcmp(y1, y2, out.nbytes) == 0);
  edgecomp_close(again);
  edgecomp_close(m2);

  /* a signature that lies about the input shape: the runtime's check must come back as a status */
  snprintf(path2, sizeof path2, "%s/sig-shape.txt", dir);
  {
    char* lie = (char*)malloc(ns + 64);
    const char* row = strstr(sbytes, "inputs");
    row = strchr(row, '\n') + 1; /* the first input's line: NAME DTYPE NDIM D0 ... */
    const char* eol = strchr(row, '\n');
    int k = (int)(row - sbytes);
    memcpy(lie, sbytes, (size_t)k);
    /* the line again as NAME DTYPE NDIM+1 D0 ... 1: one more trailing dim (range suffixes kept) */
    char name[256], dtype[32];
    int ndim = 0;
    sscanf(row, "%255s %31s %d", name, dtype, &ndim);
    const char* dims = row;
    for (int w = 0; w < 3; ++w) dims = strchr(dims, ' ') + 1;
    k += snprintf(lie + k, ns + 64 - (size_t)k, "%s %s %d %.*s 1", name, dtype, ndim + 1, (int)(eol - dims), dims);
    memcpy(lie + k, eol, ns - (size_t)(eol - sbytes));
    spit(path2, lie, (size_t)k + ns - (size_t)(eol - sbytes));
    free(lie);
  }
  edgecomp_model* liar = NULL;
  report("sig_wrong_shape_open", edgecomp_open_files(lib, params, path2, &liar));
  if (liar != NULL) {
    report("sig_wrong_shape_run", edgecomp_run(liar));
    edgecomp_close(liar);
  }

  free(x);
  free(y1);
  free(y2);
  free(damaged);
  free(pbytes);
  free(sbytes);
  printf("done\n");
  return 0;
}
