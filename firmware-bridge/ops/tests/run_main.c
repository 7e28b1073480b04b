/*
 * sciot_ops_run BLOB START STOP < inputs > outputs
 * sciot_ops_run --damage BLOB ROUNDS SEED
 *
 * Runs operators [START, STOP) of a sciot model blob. stdin holds the tensors live at
 * boundary START, stdout gets those live at STOP, each concatenated in the blob's
 * boundary order. --damage flips random bits of the blob (mostly its header, its tables and
 * its operators' parameters) ROUNDS times and opens and runs a short random range of every
 * copy the reader accepts.
 * A test tool (it uses stdio and malloc; the library does not): the sanitizer tests in
 * tests/firmware/test_ops_bitexact.py run it under ASan + UBSan.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sciot_ops.h"

static uint8_t *read_all(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf != NULL) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) {
            break;
        }
        cap *= 2;
        uint8_t *bigger = realloc(buf, cap);
        if (bigger == NULL) {
            free(buf);
        }
        buf = bigger;
    }
    *len = n;
    return buf;
}

/* The tensors live at `split`, their bytes one after the other in buf. */
static unsigned lay_out_boundary(const sciot_model *m, unsigned split, uint8_t *buf,
                                 sciot_tensor *list)
{
    unsigned n = sciot_model_boundary_count(m, split);
    size_t at = 0;
    for (unsigned k = 0; k < n; ++k) {
        sciot_model_boundary_tensor(m, split, k, &list[k]);
        list[k].data = buf + at;
        at += list[k].nbytes;
    }
    return n;
}

static uint32_t rng_state;

static uint32_t next_random(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static uint32_t le32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Damaged copies must be refused or run within bounds; the sanitizers judge the latter. */
static int damage(const uint8_t *blob, size_t len, unsigned rounds)
{
    uint8_t *copy = malloc(len);
    size_t tables = len >= 96 ? le32_at(blob + 20) : 0; /* tables follow the data */
    size_t ops = len >= 96 ? le32_at(blob + 24) : 0;
    unsigned num_ops = len >= 96 ? (unsigned)(blob[14] | (blob[15] << 8)) : 0;
    unsigned accepted = 0, ran = 0;
    if (copy == NULL || tables >= len || num_ops == 0 || ops + 48u * num_ops > len) {
        free(copy);
        return 2;
    }
    for (unsigned r = 0; r < rounds; ++r) {
        for (size_t b = 0; b < len; ++b) {
            copy[b] = blob[b];
        }
        unsigned flips = 1 + next_random() % 4;
        for (unsigned f = 0; f < flips; ++f) {
            uint32_t where = next_random() % 4;
            size_t at = where == 0   ? next_random() % 96
                        : where == 1 ? tables + next_random() % (len - tables)
                                     : next_random() % len;
            if (where == 3) { /* inside one operator's parameters */
                const uint8_t *op = blob + ops + 48u * (next_random() % num_ops);
                uint32_t off = le32_at(op + 36), plen = le32_at(op + 40);
                if (plen > 0 && off < len && plen <= len - off) {
                    at = off + next_random() % plen;
                }
            }
            copy[at] ^= (uint8_t)(1u << (next_random() % 8));
        }
        sciot_model m;
        if (!sciot_model_open(&m, copy, len)) {
            continue;
        }
        ++accepted;
        unsigned start = next_random() % (m.num_ops + 1);
        unsigned stop = start + next_random() % 3;
        if (stop > m.num_ops) {
            stop = m.num_ops;
        }
        size_t in_len = sciot_model_boundary_bytes(&m, start);
        size_t out_len = sciot_model_boundary_bytes(&m, stop);
        uint8_t *in = calloc(in_len ? in_len : 1, 1);
        uint8_t *out = malloc(out_len ? out_len : 1);
        uint8_t *arena = malloc(sciot_model_arena_size(&m) ? sciot_model_arena_size(&m) : 1);
        sciot_tensor ins[SCIOT_MAX_BOUNDARY_TENSORS];
        sciot_tensor outs[SCIOT_MAX_BOUNDARY_TENSORS];
        unsigned n_in = lay_out_boundary(&m, start, in, ins);
        unsigned n_out = lay_out_boundary(&m, stop, out, outs);
        if (sciot_model_run(&m, start, stop, ins, n_in, outs, n_out, arena,
                            sciot_model_arena_size(&m), NULL) == SCIOT_MODEL_OK) {
            ++ran;
        }
        free(arena);
        free(out);
        free(in);
    }
    free(copy);
    printf("%u rounds, %u accepted, %u ran\n", rounds, accepted, ran);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--damage") == 0) {
        FILE *df = fopen(argv[2], "rb");
        if (df == NULL) {
            perror(argv[2]);
            return 2;
        }
        size_t len = 0;
        uint8_t *blob = read_all(df, &len);
        fclose(df);
        rng_state = 2u * (uint32_t)strtoul(argv[4], NULL, 10) + 1u;
        int rc = blob == NULL ? 2 : damage(blob, len, (unsigned)strtoul(argv[3], NULL, 10));
        free(blob);
        return rc;
    }
    if (argc != 4) {
        fprintf(stderr, "usage: %s BLOB START STOP < inputs > outputs\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL) {
        perror(argv[1]);
        return 2;
    }
    size_t blob_len = 0, in_len = 0;
    uint8_t *blob = read_all(f, &blob_len);
    fclose(f);
    uint8_t *in = read_all(stdin, &in_len);
    sciot_model m;
    if (blob == NULL || in == NULL || !sciot_model_open(&m, blob, blob_len)) {
        fprintf(stderr, "%s: %s\n", argv[1],
                blob == NULL ? "out of memory" : sciot_model_strerror(m.error));
        return 1;
    }
    unsigned start = (unsigned)strtoul(argv[2], NULL, 10);
    unsigned stop = (unsigned)strtoul(argv[3], NULL, 10);
    if (start > stop || stop > m.num_ops || sciot_model_boundary_bytes(&m, start) != in_len) {
        fprintf(stderr, "bad range [%u, %u) or %zu input bytes (want %zu)\n", start, stop, in_len,
                start <= m.num_ops ? sciot_model_boundary_bytes(&m, start) : 0);
        return 1;
    }
    size_t out_len = sciot_model_boundary_bytes(&m, stop);
    uint8_t *out = malloc(out_len ? out_len : 1);
    uint8_t *arena = malloc(sciot_model_arena_size(&m) ? sciot_model_arena_size(&m) : 1);
    sciot_tensor ins[SCIOT_MAX_BOUNDARY_TENSORS];
    sciot_tensor outs[SCIOT_MAX_BOUNDARY_TENSORS];
    unsigned n_in = lay_out_boundary(&m, start, in, ins);
    unsigned n_out = lay_out_boundary(&m, stop, out, outs);
    sciot_model_err err = sciot_model_run(&m, start, stop, ins, n_in, outs, n_out, arena,
                                          sciot_model_arena_size(&m), NULL);
    if (err != SCIOT_MODEL_OK) {
        fprintf(stderr, "run: %s\n", sciot_model_strerror(err));
        return 1;
    }
    fwrite(out, 1, out_len, stdout);
    free(arena);
    free(out);
    free(in);
    free(blob);
    return 0;
}
