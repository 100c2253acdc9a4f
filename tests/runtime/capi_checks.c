/* Bad input through edgecomp.h: every call below must return a status (and a message), never crash.
 *
 * usage: capi_checks BUNDLE_DIR      (a bundle whose input 0 is float32 of rank >= 1)
 *        capi_checks BUNDLE_DIR ids  (a bundle whose input 0 is int64 token ids: out-of-range values; no run)
 * Prints one line per case: "CASE STATUS MESSAGE" (STATUS an edgecomp_status number), then "done".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgecomp.h"

static void report(const char* name, int status) { printf("%s %d %s\n", name, status, edgecomp_last_error()); }

static int check_ids(const char* bundle) {
  edgecomp_model* m = NULL;
  if (edgecomp_open(bundle, &m) != EDGECOMP_OK) {
    report("open", 1);
    return 1;
  }
  edgecomp_tensor_info in;
  edgecomp_input_info(m, 0, &in);
  int64_t* ids = (int64_t*)calloc(1, in.nbytes);
  report("ids_zero", edgecomp_set_input(m, 0, in.dtype, in.shape, in.ndim, ids, in.nbytes));
  ids[1] = 1000000000;
  report("ids_too_large", edgecomp_set_input(m, 0, in.dtype, in.shape, in.ndim, ids, in.nbytes));
  ids[1] = -5;
  report("ids_negative", edgecomp_set_input(m, 0, in.dtype, in.shape, in.ndim, ids, in.nbytes));
  edgecomp_close(m);
  free(ids);
  printf("done\n");
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 3 && strcmp(argv[2], "ids") == 0) return check_ids(argv[1]);
  if (argc != 2) return 2;
  char lib[4096], params[4096], sig[4096];
  snprintf(lib, sizeof lib, "%s/lib/model.so", argv[1]);
  snprintf(params, sizeof params, "%s/params.bin", argv[1]);
  snprintf(sig, sizeof sig, "%s/model.txt", argv[1]);
  edgecomp_model* m = (edgecomp_model*)1;

  report("open_missing_dir", edgecomp_open("/nonexistent/bundle", &m));
  printf("handle_after_failure %d\n", m == NULL);
  report("open_null_dir", edgecomp_open(NULL, &m));
  report("open_null_out", edgecomp_open(argv[1], NULL));
  report("open_params_as_signature", edgecomp_open_files(lib, params, params, &m));
  report("open_signature_as_params", edgecomp_open_files(lib, sig, sig, &m));
  report("open_params_as_library", edgecomp_open_files(params, params, sig, &m));
  report("open_static_without_model", edgecomp_open_static(params, sig, &m)); /* no static/model.o linked */

  if (edgecomp_open(argv[1], &m) != EDGECOMP_OK) {
    report("open", 1);
    return 1;
  }
  edgecomp_tensor_info in, out;
  edgecomp_input_info(m, 0, &in);
  edgecomp_output_info(m, 0, &out);
  printf("num_inputs_null %d\n", edgecomp_num_inputs(NULL));
  report("input_info_out_of_range", edgecomp_input_info(m, edgecomp_num_inputs(m), &in));
  report("output_info_negative", edgecomp_output_info(m, -1, &out));
  report("input_info_null_info", edgecomp_input_info(m, 0, NULL));
  int32_t idx = 0;
  report("input_index_unknown", edgecomp_input_index(m, "no-such-input", &idx));

  size_t nbytes = in.nbytes;
  void* data = calloc(1, nbytes + 64);
  int64_t shape[16];
  memcpy(shape, in.shape, sizeof(int64_t) * (size_t)in.ndim);
  shape[in.ndim - 1] -= 1;
  report("set_input_wrong_shape", edgecomp_set_input(m, 0, in.dtype, shape, in.ndim, data, nbytes));
  shape[in.ndim - 1] += 1;
  report("set_input_wrong_rank", edgecomp_set_input(m, 0, in.dtype, shape, in.ndim - 1, data, nbytes));
  report("set_input_wrong_dtype", edgecomp_set_input(m, 0, EDGECOMP_INT64, shape, in.ndim, data, nbytes));
  report("set_input_unknown_dtype", edgecomp_set_input(m, 0, (edgecomp_dtype)99, shape, in.ndim, data, nbytes));
  report("set_input_wrong_nbytes", edgecomp_set_input(m, 0, in.dtype, shape, in.ndim, data, nbytes - 4));
  report("set_input_null_data", edgecomp_set_input(m, 0, in.dtype, shape, in.ndim, NULL, nbytes));
  report("set_input_null_shape", edgecomp_set_input(m, 0, in.dtype, NULL, in.ndim, data, nbytes));
  report("set_input_bad_index", edgecomp_set_input(m, 7, in.dtype, shape, in.ndim, data, nbytes));
  void* y = calloc(1, out.nbytes + 64);
  report("get_output_before_run", edgecomp_get_output(m, 0, y, out.nbytes));
  report("run_null", edgecomp_run(NULL));

  report("set_input_ok", edgecomp_set_input(m, 0, in.dtype, shape, in.ndim, data, nbytes));
  report("run_ok", edgecomp_run(m));
  report("get_output_wrong_nbytes", edgecomp_get_output(m, 0, y, out.nbytes + 4));
  report("get_output_ok", edgecomp_get_output(m, 0, y, out.nbytes));
  edgecomp_close(m);
  edgecomp_close(NULL);
  free(data);
  free(y);
  printf("done\n");
  return 0;
}
