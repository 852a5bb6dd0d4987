/* SPDX-License-Identifier: MIT
 * tensor/status.c: the text of each status code, from the one list in tensor.h. */
#include "tensor/tensor.h"

static const char *const status_text[] = {
#define ND_X_TEXT(code, text) text,
    ND_STATUS_LIST(ND_X_TEXT)
#undef ND_X_TEXT
};

const char *nd_status_str(nd_status s)
{
    if ((int)s < 0 || s >= ND_STATUS_COUNT) return "unknown status";
    return status_text[s];
}
