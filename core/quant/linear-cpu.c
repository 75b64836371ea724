/* linear-cpu.c: being written */
