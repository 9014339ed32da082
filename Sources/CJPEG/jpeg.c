#include "kiln_jpeg.h"

#include <limits.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

// 8192 × 8192: the largest image decoded (libjpeg itself allows 65500 × 65500).
#define KILN_JPEG_MAX_PIXELS (8192u * 8192u)

// libjpeg's default error_exit prints and calls exit(); this one jumps back to kiln_jpeg_decode instead.
struct kiln_error_manager {
    struct jpeg_error_mgr base;
    jmp_buf jump;
};

static void kiln_error_exit(j_common_ptr info) {
    struct kiln_error_manager *manager = (struct kiln_error_manager *)info->err;
    longjmp(manager->jump, 1);
}

// A warning (msg_level -1) means the data is damaged but libjpeg would carry on with made-up pixels; Kiln
// would rather refuse the file than train on them. Trace messages (level >= 0) are ignored.
static void kiln_emit_message(j_common_ptr info, int msg_level) {
    if (msg_level < 0) kiln_error_exit(info);
}

static void kiln_output_message(j_common_ptr info) { (void)info; }

int kiln_jpeg_decode(const unsigned char *data, size_t size, unsigned char **pixels, int *width, int *height,
                     int *channels, char *message, size_t message_size) {
    struct jpeg_decompress_struct info;
    struct kiln_error_manager manager;
    // volatile: read after a longjmp out of libjpeg.
    unsigned char *volatile output = NULL;
    *pixels = NULL;
    if (message_size > 0) message[0] = '\0';
    if (size == 0 || size > (size_t)ULONG_MAX) {
        snprintf(message, message_size, "%s", size == 0 ? "empty file" : "file too large");
        return 1;
    }

    info.err = jpeg_std_error(&manager.base);
    manager.base.error_exit = kiln_error_exit;
    manager.base.emit_message = kiln_emit_message;
    manager.base.output_message = kiln_output_message;
    if (setjmp(manager.jump)) {
        char reason[JMSG_LENGTH_MAX];
        manager.base.format_message((j_common_ptr)&info, reason);
        snprintf(message, message_size, "%s", reason);
        jpeg_destroy_decompress(&info);
        free(output);
        return 1;
    }
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, (unsigned char *)data, (unsigned long)size);
    jpeg_read_header(&info, TRUE);
    if (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK) {
        snprintf(message, message_size, "CMYK JPEGs are not read; Kiln reads grey and colour (YCbCr or RGB) JPEGs");
        jpeg_destroy_decompress(&info);
        return 1;
    }
    info.out_color_space = info.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&info);

    size_t stride = (size_t)info.output_width * (size_t)info.output_components;
    // The header alone sets the size, and a few bytes of entropy-coded data can claim a huge image: refuse
    // one beyond any training image before allocating for it (Kiln then holds 4-byte floats of every sample).
    if ((size_t)info.output_width * (size_t)info.output_height > KILN_JPEG_MAX_PIXELS) {
        snprintf(message, message_size, "a %ux%u image is larger than the %u pixels Kiln decodes", info.output_width,
                 info.output_height, (unsigned)KILN_JPEG_MAX_PIXELS);
        jpeg_destroy_decompress(&info);
        return 1;
    }
    output = malloc(stride * info.output_height);
    if (output == NULL) {
        snprintf(message, message_size, "cannot allocate %zu bytes for a %ux%u image", stride * info.output_height,
                 info.output_width, info.output_height);
        jpeg_destroy_decompress(&info);
        return 1;
    }
    while (info.output_scanline < info.output_height) {
        JSAMPROW row = output + (size_t)info.output_scanline * stride;
        jpeg_read_scanlines(&info, &row, 1);
    }
    jpeg_finish_decompress(&info);
    *width = (int)info.output_width;
    *height = (int)info.output_height;
    *channels = info.output_components;
    jpeg_destroy_decompress(&info);
    *pixels = output;
    return 0;
}

void kiln_jpeg_free(unsigned char *pixels) { free(pixels); }
