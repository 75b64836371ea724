/* rle.c: being written */
