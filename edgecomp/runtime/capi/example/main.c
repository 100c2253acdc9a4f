/* An edgecomp bundle's example: run the model once on raw input files, print and write its outputs.
 *
 * usage: example BUNDLE_DIR OUT_DIR INPUT0.bin [INPUT1.bin ...]
 *        example-static BUNDLE_DIR OUT_DIR INPUT0.bin ...   (the model linked in; reads only params.bin and
 *                                                            model.txt from BUNDLE_DIR)
 *
 * INPUTk.bin holds input k as raw C-order bytes of its dtype (e.g. numpy's arr.tofile()), exactly
 * edgecomp_tensor_info.nbytes long. Output j is written to OUT_DIR/output-j.bin the same way, and one
 * line per output is printed: "output j NAME DTYPE [shape] first values ...".
 * Exit status: 0 on success, 2 on any error (the message from edgecomp_last_error on stderr).
 */
#include <stdio.h>
#include <stdlib.h>

#include "edgecomp.h"

static int fail(const char* what) {
  fprintf(stderr, "example: %s: %s\n", what, edgecomp_last_error());
  return 2;
}

/* Read exactly `nbytes` from `path` into a new buffer; NULL (and a message) on any mismatch. */
static void* read_exact(const char* path, size_t nbytes) {
  FILE* f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "example: cannot open %s\n", path);
    return NULL;
  }
  void* buf = malloc(nbytes > 0 ? nbytes : 1);
  size_t got = buf ? fread(buf, 1, nbytes, f) : 0;
  int extra = fgetc(f) != EOF;
  fclose(f);
  if (buf == NULL || got != nbytes || extra) {
    fprintf(stderr, "example: %s is not %zu bytes\n", path, nbytes);
    free(buf);
    return NULL;
  }
  return buf;
}

static void print_values(const edgecomp_tensor_info* info, const void* data) {
  size_t n = info->nbytes / edgecomp_dtype_size(info->dtype);
  for (size_t i = 0; i < n && i < 4; ++i) {
    if (info->dtype == EDGECOMP_FLOAT32) printf(" %g", ((const float*)data)[i]);
    else if (info->dtype == EDGECOMP_INT64) printf(" %lld", (long long)((const int64_t*)data)[i]);
    else if (info->dtype == EDGECOMP_INT32) printf(" %d", ((const int32_t*)data)[i]);
  }
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s BUNDLE_DIR OUT_DIR INPUT0.bin [INPUT1.bin ...]\n", argv[0]);
    return 2;
  }
  edgecomp_model* model = NULL;
#ifdef EDGECOMP_EXAMPLE_STATIC /* `make example-static`: the model is linked into this program */
  char params[4096], signature[4096];
  snprintf(params, sizeof params, "%s/params.bin", argv[1]);
  snprintf(signature, sizeof signature, "%s/model.txt", argv[1]);
  if (edgecomp_open_static(params, signature, &model) != EDGECOMP_OK) return fail("open_static");
#else
  if (edgecomp_open(argv[1], &model) != EDGECOMP_OK) return fail("open");
#endif
  int status = 0;
  int32_t n_in = edgecomp_num_inputs(model), n_out = edgecomp_num_outputs(model);
  if (argc - 3 != n_in) {
    fprintf(stderr, "example: the model has %d inputs, %d files given\n", n_in, argc - 3);
    edgecomp_close(model);
    return 2;
  }
  for (int32_t k = 0; k < n_in && status == 0; ++k) {
    edgecomp_tensor_info in;
    if (edgecomp_input_info(model, k, &in) != EDGECOMP_OK) {
      status = fail("input_info");
      break;
    }
    void* data = read_exact(argv[3 + k], in.nbytes);
    if (data == NULL) status = 2;
    else if (edgecomp_set_input(model, k, in.dtype, in.shape, in.ndim, data, in.nbytes) != EDGECOMP_OK)
      status = fail("set_input");
    free(data);
  }
  if (status == 0 && edgecomp_run(model) != EDGECOMP_OK) status = fail("run");
  for (int32_t j = 0; j < n_out && status == 0; ++j) {
    edgecomp_tensor_info out;
    void* data = NULL;
    if (edgecomp_output_info(model, j, &out) != EDGECOMP_OK) {
      status = fail("output_info");
    } else if ((data = malloc(out.nbytes > 0 ? out.nbytes : 1)) == NULL) {
      fprintf(stderr, "example: out of memory\n");
      status = 2;
    } else if (edgecomp_get_output(model, j, data, out.nbytes) != EDGECOMP_OK) {
      status = fail("get_output");
    } else {
      printf("output %d %s %s [", j, out.name, edgecomp_dtype_name(out.dtype));
      for (int32_t i = 0; i < out.ndim; ++i) printf(i ? ", %lld" : "%lld", (long long)out.shape[i]);
      printf("]");
      print_values(&out, data);
      printf("\n");
      char path[4096];
      snprintf(path, sizeof path, "%s/output-%d.bin", argv[2], j);
      FILE* f = fopen(path, "wb");
      if (f == NULL || fwrite(data, 1, out.nbytes, f) != out.nbytes) {
        fprintf(stderr, "example: cannot write %s\n", path);
        status = 2;
      }
      if (f != NULL && fclose(f) != 0) status = 2;
    }
    free(data);
  }
  edgecomp_close(model);
  return status;
}
