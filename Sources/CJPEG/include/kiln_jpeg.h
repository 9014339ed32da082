// JPEG decoding through libjpeg(-turbo), with an error manager that returns instead of calling exit().
#ifndef KILN_JPEG_H
#define KILN_JPEG_H

#include <stddef.h>

/// Decodes a JPEG held in memory to 8-bit samples, interleaved row after row: grey images as one channel,
/// colour (YCbCr or RGB) as three. On success returns 0 and sets *pixels (free it with kiln_jpeg_free),
/// *width, *height and *channels. On failure returns nonzero, sets *pixels to NULL and writes libjpeg's
/// reason (or Kiln's, for what it refuses) into message, at most message_size bytes with the terminator.
/// Warnings about damaged data (a truncated file, bad Huffman codes) are failures too.
int kiln_jpeg_decode(const unsigned char *data, size_t size, unsigned char **pixels, int *width, int *height,
                     int *channels, char *message, size_t message_size);

/// Frees the pixels kiln_jpeg_decode returned.
void kiln_jpeg_free(unsigned char *pixels);

#endif
