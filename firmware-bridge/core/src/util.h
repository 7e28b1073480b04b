/* Freestanding helpers of the core: no libc on the microcontroller target. */
#ifndef SCIOT_UTIL_H
#define SCIOT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void sciot_copy(void *dst, const void *src, size_t n);
void sciot_zero(void *dst, size_t n);
size_t sciot_strlen(const char *s);
bool sciot_str_eq(const char *a, size_t alen, const char *cstr);

/* Appends a NUL-terminated string to dst[pos..cap); false (dst unchanged past pos) if it
 * does not fit with its terminator. */
bool sciot_append(char *dst, size_t cap, size_t *pos, const char *s, size_t len);

#define SCIOT_STATIC_ASSERT(cond, name) typedef char sciot_static_assert_##name[(cond) ? 1 : -1]

#endif
