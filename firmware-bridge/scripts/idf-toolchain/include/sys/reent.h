/* Debian's newlib 3.3 declares _global_impure_ptr const; ESP-IDF's newlib 4 (and IDF's own
 * platform_include/sys/reent.h, which declares it again) do not. Rename Debian's declaration
 * out of the way (idf-compile-check.sh only). */
#define _global_impure_ptr __debian_newlib33_global_impure_ptr
#include_next <sys/reent.h>
#undef _global_impure_ptr
