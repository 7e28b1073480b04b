#include "util.h"

void sciot_copy(void *dst, const void *src, size_t n)
{
    uint8_t *d = (uint8_t *)dst;
    const uint8_t *s = (const uint8_t *)src;
    while (n--) {
        *d++ = *s++;
    }
}

void sciot_zero(void *dst, size_t n)
{
    uint8_t *d = (uint8_t *)dst;
    while (n--) {
        *d++ = 0;
    }
}

size_t sciot_strlen(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0') {
        n++;
    }
    return n;
}

bool sciot_str_eq(const char *a, size_t alen, const char *cstr)
{
    size_t i;
    for (i = 0; i < alen; i++) {
        if (cstr[i] == '\0' || cstr[i] != a[i]) {
            return false;
        }
    }
    return cstr[alen] == '\0';
}

bool sciot_append(char *dst, size_t cap, size_t *pos, const char *s, size_t len)
{
    if (*pos + len + 1 > cap) {
        return false;
    }
    sciot_copy(dst + *pos, s, len);
    *pos += len;
    dst[*pos] = '\0';
    return true;
}
