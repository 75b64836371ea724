/* recipe.c: being written */
