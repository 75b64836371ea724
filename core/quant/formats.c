/* formats.c: being written */
