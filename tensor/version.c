/* SPDX-License-Identifier: MIT
 * tensor/version.c: the linked library's version (nd_version), fixed when the library is built;
 * the ND_VERSION_* macros in nd_config.h are the headers' version. */
#include "tensor/tensor.h"

const char *nd_version(void)
{
    return ND_VERSION_STRING;
}
