#ifndef STARLING_CZLIB_SHIM_H
#define STARLING_CZLIB_SHIM_H
// System zlib (libz-dev): gzip for --tgz bundles.
#include <zlib.h>
#endif
