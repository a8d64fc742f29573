/* libFuzzer target: the .npy header parser (bench/npy.c) on arbitrary bytes taken as a whole file. */
#include "npy.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    npy_array a;
    size_t offset = 0;
    char err[256];
    if (npy_parse_header(data, size, size, &a, &offset, err, sizeof err) == 0) {
        /* A header that passes promises exactly the rest of the file as data. */
        const size_t bytes = (size_t)a.count * (a.is_f16 ? 2 : 4);
        if (offset > size || size - offset != bytes)
            __builtin_trap();
    } else if (!memchr(err, '\0', sizeof err) || !err[0]) {
        __builtin_trap(); /* every rejection has a message */
    }
    return 0;
}
