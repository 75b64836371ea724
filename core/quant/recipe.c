/* recipe.c: quantization recipes from YAML and back. See recipe.h for the layout.
 *
 * Every key is described once, in the key tables below: its name, its form, its limits and the
 * field of Sam2Recipe it sets. Reading, range checks, writing (sam2_recipe_to_yaml) and
 * comparison (sam2_recipe_equal) all walk those tables, so a key cannot be read without being
 * checked, written back and compared.
 *
 * Reading has two steps: libyaml's event parser builds a small tree whose nodes know the line and
 * column they start at, then the tree is checked against the tables, so that every error names
 * `<source>:<line>:<column>: <key path>:` and says what is accepted there.
 *
 * Decisions, as a recipe author meets them:
 *   - Booleans are `true` and `false` only. YAML 1.1 (PyYAML, so DeepCompressor) reads yes, no,
 *     on, off as booleans and YAML 1.2 reads them as strings; refusing them cannot mean either
 *     one silently.
 *   - Integers are decimal without leading zeros (YAML 1.1 reads 010 as 8, YAML 1.2 as 10);
 *     where an integer is expected, 128.0 is refused. Numbers are plain: "128" is a string.
 *   - Null is `null`, `~` or nothing after the colon. It is accepted only where it means
 *     something: `ipts` and `ipts.dtype` (weight-only), `kernel_gptq`, `smooth` and `low_rank`
 *     (off, as is `false`; `true` is refused: write a mapping, `{}` for the defaults) and
 *     `skips.patterns` (none).
 *   - Every absent key keeps its default, kernel_gptq included: GPTQ stays on unless
 *     `kernel_gptq: false`. (DeepCompressor reads an absent kernel_gptq as round to nearest; here
 *     that would make `quant: {wgts: {low_rank: ...}}`, an alias of `low_rank`, turn GPTQ off.)
 *   - Group sizes: -1 (one group per output channel, stored as 0) or a multiple of 8 from 8 to
 *     4096, given as group_shapes [[1, G]] or [1, G], or as group_size G. A multiple of 8 starts
 *     every group on a 32-bit word of its row's packed codes (8 codes), so no kernel has to split
 *     a word between two scales; a K that is not a multiple of G ends in a tail group
 *     (formats.h). GPTQ's block_size is only the width of its lazy updates: any value from 1 to
 *     4096 is accepted.
 *   - YAML anchors, aliases and tags are refused: each value is written where it applies, so an
 *     error has one place to point to and the recipe stored in a model file reads on its own.
 *   - One document. An empty text, or one with only comments, is the defaults.
 *   - Nesting deeper than 16 levels (a recipe needs 5) and texts over 1 MiB are refused, which
 *     bounds the memory and time a hostile file can take.
 *   - An alias and its canonical key may both be given when they agree: each setting remembers
 *     where it was set, and a second spelling with another value is an error naming both.
 *   - sam2_recipe_equal compares what a recipe does: not its name, not the GPTQ settings when
 *     GPTQ is off, not the smoothing settings when smoothing is off, not alpha when it is searched
 *     (sam2_recipe_to_yaml writes none of these).
 */
#include "recipe.h"

#include "hub.h"
#include "sam2.h"

#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define RECIPE_MAX_BYTES (1 << 20)
#define RECIPE_MAX_DEPTH 16
#define RECIPE_GROUP_MULTIPLE 8
#define RECIPE_GROUP_MAX 4096
#define RECIPE_SHOWN_CHARS 40       /* of a value quoted in a message */
#define RECIPE_GROUP_TEXT "-1 (one group per output channel) or a multiple of 8 from 8 to 4096"

/* The switch fields are int-sized enums and gbooleans, read and written as int. */
G_STATIC_ASSERT (sizeof (Sam2QType) == sizeof (int));
G_STATIC_ASSERT (sizeof (gboolean) == sizeof (int));

/* ---- key tables ---------------------------------------------------------------------------- */

typedef enum {
  KIND_SECTION,              /* a mapping of keys; with a switch field when it can be turned off */
  KIND_BOOL,                 /* gboolean */
  KIND_INT,                  /* int in [min, max] */
  KIND_SEED,                 /* guint64 */
  KIND_DOUBLE,               /* double in [min, max] (or open at either end, by flags) */
  KIND_CHOICE,               /* int: one of `choices` by name; "null" stands for YAML null */
  KIND_GROUP_SHAPES,         /* int group size from [[1, G]] or [1, G]; G = -1 stored as 0 */
  KIND_GROUP_SIZE,           /* the same from a plain G */
  KIND_ALPHA,                /* double (offset) and gboolean search (offset2): a number or search */
  KIND_PATTERNS,             /* char **, NULL-terminated; NULL when empty */
} Sam2RecipeKind;

enum {
  RECIPE_OPEN_MIN = 1 << 0,  /* DOUBLE: min itself is refused */
  RECIPE_OPEN_MAX = 1 << 1,  /* DOUBLE: max itself is refused */
  RECIPE_NULL_OFF = 1 << 2,  /* SECTION: null sets the switch field to `off` */
  RECIPE_FALSE_OFF = 1 << 3, /* SECTION: so does false */
  RECIPE_MAPPING_ON = 1 << 4,/* SECTION: a mapping sets the switch field to `on` */
  RECIPE_WRITE_OFF = 1 << 5, /* SECTION: written as `false` when off; its keys then do not count */
};
#define RECIPE_SWITCH (RECIPE_NULL_OFF | RECIPE_FALSE_OFF | RECIPE_MAPPING_ON)

typedef struct {
  const char *name;          /* the first name of a value is the one written */
  int value;
} Sam2RecipeChoice;

typedef struct _Sam2RecipeKey Sam2RecipeKey;
struct _Sam2RecipeKey {
  const char *name;
  Sam2RecipeKind kind;
  size_t offset;             /* into Sam2Recipe; SECTION: the switch field, if flags have one */
  size_t offset2;            /* ALPHA: the search flag */
  double min, max;           /* INT, DOUBLE */
  guint flags;
  const Sam2RecipeChoice *choices;  /* CHOICE */
  guint n_choices;
  const char *noun;          /* CHOICE: what a value is; SECTION: what turns it off */
  const Sam2RecipeKey *keys; /* SECTION */
  guint n_keys;
  int off, on;               /* SECTION: switch values */
  const char *alias_of;      /* another spelling of this canonical path; NULL when canonical */
};

#define OFF(member) offsetof (Sam2Recipe, member)
#define BOOL_ALIAS(k, m, alias) \
  { .name = k, .kind = KIND_BOOL, .offset = OFF (m), .alias_of = alias }
#define BOOL(k, m) BOOL_ALIAS (k, m, NULL)
#define INT(k, m, lo, hi) { .name = k, .kind = KIND_INT, .offset = OFF (m), .min = lo, .max = hi }
#define SEED(k, m) { .name = k, .kind = KIND_SEED, .offset = OFF (m) }
#define DOUBLE(k, m, lo, hi, open) \
  { .name = k, .kind = KIND_DOUBLE, .offset = OFF (m), .min = lo, .max = hi, .flags = open }
#define CHOICE(k, m, table, what) { .name = k, .kind = KIND_CHOICE, .offset = OFF (m), \
    .choices = table, .n_choices = G_N_ELEMENTS (table), .noun = what }
#define GROUP_SHAPES(k, alias) \
  { .name = k, .kind = KIND_GROUP_SHAPES, .offset = OFF (wgts.group_size), .alias_of = alias }
#define GROUP_SIZE(k, alias) \
  { .name = k, .kind = KIND_GROUP_SIZE, .offset = OFF (wgts.group_size), .alias_of = alias }
#define ALPHA(k, m, search) \
  { .name = k, .kind = KIND_ALPHA, .offset = OFF (m), .offset2 = OFF (search) }
#define PATTERNS(k, m) { .name = k, .kind = KIND_PATTERNS, .offset = OFF (m) }
#define SECTION(k, table) \
  { .name = k, .kind = KIND_SECTION, .keys = table, .n_keys = G_N_ELEMENTS (table) }
#define SWITCH(k, table, m, fl, off_value, on_value, what, alias) \
  { .name = k, .kind = KIND_SECTION, .keys = table, .n_keys = G_N_ELEMENTS (table), \
    .offset = OFF (m), .flags = fl, .off = off_value, .on = on_value, .noun = what, \
    .alias_of = alias }

static const Sam2RecipeChoice weight_types[] = {
  { "sint4", SAM2_QTYPE_SINT4 },
  { "uint4", SAM2_QTYPE_UINT4 },
};
static const Sam2RecipeChoice act_types[] = {
  { "sint8", SAM2_QTYPE_SINT8 },
  { "uint8", SAM2_QTYPE_UINT8 },
  { "null", SAM2_QTYPE_NONE },
};
static const Sam2RecipeChoice granularities[] = {
  { "per_token", FALSE },
  { "per_tensor", TRUE },
};
static const Sam2RecipeChoice post_gelu_modes[] = {
  { "asymmetric", TRUE },
  { "symmetric", FALSE },
};
static const Sam2RecipeChoice float_dtypes[] = {
  { "float16", FALSE },
  { "float32", TRUE },
};

static const Sam2RecipeKey gptq_keys[] = {
  DOUBLE ("damp_percentage", wgts.gptq_damp, 0.0, 1.0, RECIPE_OPEN_MIN | RECIPE_OPEN_MAX),
  INT ("block_size", wgts.gptq_block, 1, 4096),
  BOOL ("act_order", wgts.gptq_act_order),
  INT ("num_inv_tries", wgts.gptq_inv_tries, 1, 100),
};

static const Sam2RecipeChoice range_objectives[] = {
  { "products_error", TRUE },
  { "tensor_error", FALSE },
};

static const Sam2RecipeKey calib_range_keys[] = {
  DOUBLE ("max_shrink", wgts.range_max_shrink, 0.0, 1.0, RECIPE_OPEN_MAX),
  INT ("num_grids", wgts.range_grids, 1, 1000),
  CHOICE ("objective", wgts.range_products, range_objectives, "a range objective"),
};

static const Sam2RecipeKey smooth_keys[] = {
  ALPHA ("alpha", smooth.alpha, smooth.search),
  INT ("grid", smooth.grid, 2, 1000),
  BOOL ("fold", smooth.fold),
};

static const Sam2RecipeKey low_rank_keys[] = {
  INT ("rank", low_rank.rank, 0, 1024),
  BOOL ("exclusive", low_rank.exclusive),
  BOOL ("compensate", low_rank.compensate),
};

#define SMOOTH_KEY(alias) \
  SWITCH ("smooth", smooth_keys, smooth.enabled, \
          RECIPE_NULL_OFF | RECIPE_FALSE_OFF | RECIPE_MAPPING_ON | RECIPE_WRITE_OFF, FALSE, TRUE, \
          "false or null (no smoothing)", alias)
/* off is rank 0; a mapping turns nothing on by itself: its rank does */
#define LOW_RANK_KEY(alias) \
  SWITCH ("low_rank", low_rank_keys, low_rank.rank, RECIPE_NULL_OFF | RECIPE_FALSE_OFF, 0, 0, \
          "false or null (no low-rank branch)", alias)

static const Sam2RecipeKey wgts_keys[] = {
  CHOICE ("dtype", wgts.dtype, weight_types, "a weight type"),
  GROUP_SHAPES ("group_shapes", NULL),
  GROUP_SIZE ("group_size", "quant.wgts.group_shapes"),
  SWITCH ("kernel_gptq", gptq_keys, wgts.gptq,
          RECIPE_NULL_OFF | RECIPE_FALSE_OFF | RECIPE_MAPPING_ON | RECIPE_WRITE_OFF, FALSE, TRUE,
          "false or null (round to nearest)", NULL),
  SWITCH ("calib_range", calib_range_keys, wgts.range_search,
          RECIPE_NULL_OFF | RECIPE_FALSE_OFF | RECIPE_MAPPING_ON | RECIPE_WRITE_OFF, FALSE, TRUE,
          "false or null (min-max ranges)", NULL),
  LOW_RANK_KEY ("low_rank"),
};

static const Sam2RecipeKey ipts_keys[] = {
  CHOICE ("dtype", ipts.dtype, act_types, "an activation type"),
  CHOICE ("granularity", ipts.per_tensor, granularities, "a granularity"),
  CHOICE ("post_gelu", ipts.post_gelu_asymmetric, post_gelu_modes, "a post-GELU mode"),
};

static const Sam2RecipeKey quant_keys[] = {
  SECTION ("wgts", wgts_keys),
  SWITCH ("ipts", ipts_keys, ipts.dtype, RECIPE_NULL_OFF, SAM2_QTYPE_NONE, 0,
          "null (weight-only)", NULL),
  SMOOTH_KEY ("smooth"),
};

static const Sam2RecipeKey calib_keys[] = {
  INT ("num_samples", calib.num_samples, 1, 100000),
  INT ("batch_size", calib.batch_size, 1, SAM2_SESSION_MAX_BATCH),
  INT ("max_tokens", calib.max_tokens, 0, G_MAXINT),
  INT ("keep_tokens", calib.keep_tokens, 1, 65536),
  SEED ("seed", calib.seed),
};

static const Sam2RecipeKey skips_keys[] = {
  BOOL ("patch_embed", skips.patch_embed),
  BOOL ("first_block", skips.first_block),
  BOOL ("last_block", skips.last_block),
  BOOL ("decoder", skips.decoder),
  PATTERNS ("patterns", skips.patterns),
  CHOICE ("dtype", skips.keep_float32, float_dtypes, "a storage type for float layers"),
};

static const Sam2RecipeKey top_keys[] = {
  SECTION ("quant", quant_keys),
  SMOOTH_KEY (NULL),
  LOW_RANK_KEY (NULL),
  SECTION ("calib", calib_keys),
  SECTION ("skips", skips_keys),
  GROUP_SHAPES ("group_shapes", "quant.wgts.group_shapes"),
  GROUP_SIZE ("group_size", "quant.wgts.group_shapes"),
  BOOL_ALIAS ("skip_patch_embed", skips.patch_embed, "skips.patch_embed"),
  BOOL_ALIAS ("skip_first_block", skips.first_block, "skips.first_block"),
  BOOL_ALIAS ("skip_last_block", skips.last_block, "skips.last_block"),
  BOOL_ALIAS ("skip_decoder", skips.decoder, "skips.decoder"),
};

#define FIELD(recipe, offset, type) ((type *) ((char *) (recipe) + (offset)))
#define FIELD_C(recipe, offset, type) ((const type *) ((const char *) (recipe) + (offset)))

static gboolean
recipe_has_switch (const Sam2RecipeKey *key)
{
  return key->kind == KIND_SECTION && (key->flags & RECIPE_SWITCH) != 0;
}

/* ---- values ------------------------------------------------------------------------------- */

/* One key's setting, between the YAML and the struct; unused members stay zero. */
typedef struct {
  gint64 i;                  /* BOOL, INT, CHOICE, GROUP_*, a SECTION's switch */
  guint64 u;                 /* SEED */
  double d;                  /* DOUBLE, ALPHA */
  gboolean search;           /* ALPHA */
  char **strv;               /* PATTERNS, owned */
} Sam2RecipeValue;

static Sam2RecipeValue
recipe_value_get (const Sam2RecipeKey *key, const Sam2Recipe *recipe)
{
  Sam2RecipeValue value = { 0 };
  switch (key->kind) {
  case KIND_SEED:
    value.u = *FIELD_C (recipe, key->offset, guint64);
    break;
  case KIND_DOUBLE:
    value.d = *FIELD_C (recipe, key->offset, double);
    break;
  case KIND_ALPHA:
    value.search = *FIELD_C (recipe, key->offset2, gboolean);
    value.d = value.search ? 0.0 : *FIELD_C (recipe, key->offset, double);
    break;
  case KIND_PATTERNS:
    value.strv = (char **) *FIELD_C (recipe, key->offset, char *const *);
    break;
  case KIND_SECTION:
  case KIND_BOOL:
  case KIND_INT:
  case KIND_CHOICE:
  case KIND_GROUP_SHAPES:
  case KIND_GROUP_SIZE:
    value.i = *FIELD_C (recipe, key->offset, int);
    break;
  }
  return value;
}

/* Takes the value's strings. A searched alpha leaves the number alone: it is not used. */
static void
recipe_value_set (const Sam2RecipeKey *key, Sam2Recipe *recipe, Sam2RecipeValue *value)
{
  switch (key->kind) {
  case KIND_SEED:
    *FIELD (recipe, key->offset, guint64) = value->u;
    break;
  case KIND_DOUBLE:
    *FIELD (recipe, key->offset, double) = value->d;
    break;
  case KIND_ALPHA:
    *FIELD (recipe, key->offset2, gboolean) = value->search;
    if (!value->search)
      *FIELD (recipe, key->offset, double) = value->d;
    break;
  case KIND_PATTERNS:
    g_strfreev (*FIELD (recipe, key->offset, char **));
    *FIELD (recipe, key->offset, char **) = value->strv;
    value->strv = NULL;
    break;
  case KIND_SECTION:
  case KIND_BOOL:
  case KIND_INT:
  case KIND_CHOICE:
  case KIND_GROUP_SHAPES:
  case KIND_GROUP_SIZE:
    *FIELD (recipe, key->offset, int) = (int) value->i;
    break;
  }
}

static gboolean
recipe_strv_equal (char *const *a, char *const *b)
{
  const guint na = a != NULL ? g_strv_length ((char **) a) : 0;
  const guint nb = b != NULL ? g_strv_length ((char **) b) : 0;
  if (na != nb)
    return FALSE;
  for (guint i = 0; i < na; i++)
    if (strcmp (a[i], b[i]) != 0)
      return FALSE;
  return TRUE;
}

/* NULL and empty pattern lists are equal; a searched alpha has no number. */
static gboolean
recipe_value_equal (const Sam2RecipeValue *a, const Sam2RecipeValue *b)
{
  if (a->search || b->search)
    return a->search == b->search;
  return a->i == b->i && a->u == b->u && a->d == b->d && recipe_strv_equal (a->strv, b->strv);
}

/* ---- text in messages and in YAML -------------------------------------------------------- */

static char *
recipe_path (const char *prefix, const char *key)
{
  return *prefix == '\0' ? g_strdup (key) : g_strconcat (prefix, ".", key, NULL);
}

/* Control characters, quotes and backslashes escaped; NUL bytes are kept visible. */
static void
recipe_append_escaped (GString *out, const char *text, gsize length)
{
  for (gsize i = 0; i < length; i++) {
    const unsigned char c = (unsigned char) text[i];
    if (c == '"' || c == '\\')
      g_string_append_printf (out, "\\%c", c);
    else if (c < 0x20 || c == 0x7f)
      g_string_append_printf (out, "\\x%02X", c);
    else
      g_string_append_c (out, (char) c);
  }
}

/* Text for messages, escaped, cut after RECIPE_SHOWN_CHARS characters, in double quotes or
 * not. */
static char *
recipe_shown (const char *text, gsize length, gboolean quotes)
{
  const char *end = text, *limit = text + length;
  for (int n = 0; end < limit && n < RECIPE_SHOWN_CHARS; n++)
    end = g_utf8_next_char (end);
  if (end > limit)
    end = limit;
  GString *out = g_string_new (quotes ? "\"" : "");
  recipe_append_escaped (out, text, end - text);
  g_string_append (out, end < limit ? "..." : "");
  g_string_append (out, quotes ? "\"" : "");
  return g_string_free (out, FALSE);
}

/* A YAML double-quoted scalar of any UTF-8 string, in ASCII: everything else is escaped, so no
 * character can be a line break or otherwise unprintable to YAML. */
static void
recipe_write_string (GString *out, const char *text)
{
  g_string_append_c (out, '"');
  for (const char *p = text; *p != '\0';) {
    const unsigned char c = (unsigned char) *p;
    if (c >= 0x20 && c < 0x7f) {
      if (c == '"' || c == '\\')
        g_string_append_c (out, '\\');
      g_string_append_c (out, (char) c);
      p++;
      continue;
    }
    gunichar u = g_utf8_get_char_validated (p, -1);
    if (c < 0x80 || u == (gunichar) -1 || u == (gunichar) -2) {
      g_string_append_printf (out, "\\x%02X", c);     /* not UTF-8: keep the byte's value */
      p++;
    } else {
      g_string_append_printf (out, u > 0xffff ? "\\U%08X" : "\\u%04X", u);
      p = g_utf8_next_char (p);
    }
  }
  g_string_append_c (out, '"');
}

/* The shortest decimal that reads back as the same double. */
static void
recipe_write_double (GString *out, double value)
{
  char buffer[G_ASCII_DTOSTR_BUF_SIZE];
  for (int digits = 1; digits <= 17; digits++) {
    char format[8];
    g_snprintf (format, sizeof format, "%%.%dg", digits);
    g_ascii_formatd (buffer, sizeof buffer, format, value);
    if (g_ascii_strtod (buffer, NULL) == value)
      break;
  }
  g_string_append (out, buffer);
}

static const char *
recipe_choice_name (const Sam2RecipeKey *key, gint64 value)
{
  for (guint i = 0; i < key->n_choices; i++)
    if (key->choices[i].value == value)
      return key->choices[i].name;
  return NULL;
}

static void
recipe_write_value (GString *out, const Sam2RecipeKey *key, const Sam2RecipeValue *value)
{
  switch (key->kind) {
  case KIND_BOOL:
    g_string_append (out, value->i ? "true" : "false");
    break;
  case KIND_INT:
    g_string_append_printf (out, "%" G_GINT64_FORMAT, value->i);
    break;
  case KIND_SEED:
    g_string_append_printf (out, "%" G_GUINT64_FORMAT, value->u);
    break;
  case KIND_DOUBLE:
    recipe_write_double (out, value->d);
    break;
  case KIND_CHOICE: {
    /* a value outside the table (a recipe built in code) is written so that it fails to parse */
    const char *name = recipe_choice_name (key, value->i);
    if (name != NULL)
      g_string_append (out, name);
    else
      g_string_append_printf (out, "%" G_GINT64_FORMAT, value->i);
    break;
  }
  case KIND_GROUP_SHAPES:
  case KIND_GROUP_SIZE:
    g_string_append_printf (out, "[[1, %" G_GINT64_FORMAT "]]", value->i == 0 ? -1 : value->i);
    break;
  case KIND_ALPHA:
    if (value->search)
      g_string_append (out, "search");
    else
      recipe_write_double (out, value->d);
    break;
  case KIND_PATTERNS:
    g_string_append_c (out, '[');
    for (guint i = 0; value->strv != NULL && value->strv[i] != NULL; i++) {
      if (i > 0)
        g_string_append (out, ", ");
      recipe_write_string (out, value->strv[i]);
    }
    g_string_append_c (out, ']');
    break;
  case KIND_SECTION:
    g_assert_not_reached ();
  }
}

/* "sint8, uint8 or null" */
static char *
recipe_choice_names (const Sam2RecipeKey *key)
{
  GString *s = g_string_new (NULL);
  for (guint i = 0; i < key->n_choices; i++)
    g_string_append_printf (s, "%s%s", i == 0 ? "" : i + 1 == key->n_choices ? " or " : ", ",
                            key->choices[i].name);
  return g_string_free (s, FALSE);
}

/* What a key accepts, for messages: "an integer from 1 to 1024". */
static char *
recipe_key_accepts (const Sam2RecipeKey *key)
{
  switch (key->kind) {
  case KIND_SECTION:
    return recipe_has_switch (key) ? g_strdup_printf ("a mapping, or %s", key->noun)
                                   : g_strdup ("a mapping");
  case KIND_BOOL:
    return g_strdup ("true or false");
  case KIND_INT:
    return g_strdup_printf ("an integer from %.0f to %.0f", key->min, key->max);
  case KIND_SEED:
    return g_strdup ("an integer from 0 to 18446744073709551615");
  case KIND_DOUBLE:
    return g_strdup_printf ("a number in %c%g, %g%c", key->flags & RECIPE_OPEN_MIN ? '(' : '[',
                            key->min, key->max, key->flags & RECIPE_OPEN_MAX ? ')' : ']');
  case KIND_CHOICE: {
    char *names = recipe_choice_names (key);
    char *accepted = g_strdup_printf ("%s: %s", key->noun, names);
    g_free (names);
    return accepted;
  }
  case KIND_GROUP_SHAPES:
    return g_strdup ("[[1, G]] or [1, G] with G " RECIPE_GROUP_TEXT);
  case KIND_GROUP_SIZE:
    return g_strdup (RECIPE_GROUP_TEXT);
  case KIND_ALPHA:
    return g_strdup ("a number in [0, 1] or search");
  case KIND_PATTERNS:
    return g_strdup ("a list of glob patterns (strings)");
  }
  g_return_val_if_reached (NULL);
}

/* ---- the YAML tree ------------------------------------------------------------------------- */

typedef enum {
  NODE_SCALAR,
  NODE_MAPPING,
  NODE_SEQUENCE,
} Sam2YamlNodeType;

typedef struct {
  Sam2YamlNodeType type;
  int line, column;          /* 1-based, where the node starts */
  char *text;                /* SCALAR: NUL-terminated, but may hold NUL bytes: see length */
  gsize length;
  gboolean plain;            /* SCALAR: unquoted, so null, booleans and numbers are read from it */
  GPtrArray *children;       /* MAPPING: key, value, key, value...; SEQUENCE: the items */
} Sam2YamlNode;

static void
recipe_node_free (gpointer data)
{
  Sam2YamlNode *node = data;
  if (node == NULL)
    return;
  g_free (node->text);
  if (node->children != NULL)
    g_ptr_array_unref (node->children);
  g_free (node);
}

typedef struct {
  size_t offset;             /* the field (a key's offset) */
  char *path;
  int line, column;
  char *shown;               /* the value as written */
  Sam2RecipeValue value;
} Sam2RecipeAssignment;

static void
recipe_assignment_free (gpointer data)
{
  Sam2RecipeAssignment *a = data;
  g_free (a->path);
  g_free (a->shown);
  g_strfreev (a->value.strv);
  g_free (a);
}

typedef struct {
  const char *source;
  const char *text;
  gsize length;
  Sam2Recipe *recipe;
  GPtrArray *assignments;    /* Sam2RecipeAssignment: which key set each field, and where */
  GError **error;
} Sam2RecipeReader;

static gboolean G_GNUC_PRINTF (5, 6)
recipe_error (Sam2RecipeReader *reader, int line, int column, const char *path,
              const char *format, ...)
{
  va_list args;
  va_start (args, format);
  char *what = g_strdup_vprintf (format, args);
  va_end (args);
  if (path != NULL && *path != '\0')
    g_set_error (reader->error, SAM2_ERROR, SAM2_ERROR_CONFIG, "%s:%d:%d: %s: %s",
                 reader->source, line, column, path, what);
  else
    g_set_error (reader->error, SAM2_ERROR, SAM2_ERROR_CONFIG, "%s:%d:%d: %s", reader->source,
                 line, column, what);
  g_free (what);
  return FALSE;
}

/* Line and column of a byte offset, counting characters as libyaml does. */
static void
recipe_position (const char *text, gsize length, gsize offset, int *line, int *column)
{
  *line = 1;
  *column = 1;
  for (gsize i = 0; i < MIN (offset, length); i++) {
    const unsigned char c = (unsigned char) text[i];
    if (c == '\n' || (c == '\r' && (i + 1 >= length || text[i + 1] != '\n'))) {
      (*line)++;
      *column = 1;
    } else if (c != '\r' && (c & 0xc0) != 0x80) {
      (*column)++;
    }
  }
}

static gboolean
recipe_syntax_error (Sam2RecipeReader *reader, const yaml_parser_t *parser)
{
  int line, column;
  if (parser->error == YAML_MEMORY_ERROR)
    return recipe_error (reader, 1, 1, NULL, "out of memory while reading YAML");
  if (parser->error == YAML_READER_ERROR) {
    recipe_position (reader->text, reader->length, parser->problem_offset, &line, &column);
    return recipe_error (reader, line, column, NULL, "invalid YAML: %s (0x%X)",
                         parser->problem != NULL ? parser->problem : "unreadable text",
                         (unsigned) parser->problem_value);
  }
  line = (int) parser->problem_mark.line + 1;
  column = (int) parser->problem_mark.column + 1;
  const char *problem = parser->problem != NULL ? parser->problem : "syntax error";
  /* `- *.attn.proj` scans as an alias: say what was meant */
  const char *hint = parser->context != NULL && strstr (parser->context, "alias") != NULL
                     ? "; a glob pattern starting with * must be quoted: \"*.attn.proj\"" : "";
  if (parser->context != NULL)
    return recipe_error (reader, line, column, NULL,
                         "invalid YAML: %s (%s at line %d, column %d)%s", problem,
                         parser->context, (int) parser->context_mark.line + 1,
                         (int) parser->context_mark.column + 1, hint);
  return recipe_error (reader, line, column, NULL, "invalid YAML: %s%s", problem, hint);
}

typedef struct {
  Sam2YamlNode *stack[RECIPE_MAX_DEPTH];  /* the open mappings and sequences */
  int depth;
  int documents;
  Sam2YamlNode *root;
  gboolean done;
} Sam2YamlBuild;

static gboolean
recipe_tree_add (Sam2RecipeReader *reader, Sam2YamlBuild *build, const yaml_event_t *event,
                 Sam2YamlNodeType type, const yaml_char_t *anchor, const yaml_char_t *tag)
{
  const int line = (int) event->start_mark.line + 1, column = (int) event->start_mark.column + 1;
  if (anchor != NULL)
    return recipe_error (reader, line, column, NULL,
                         "YAML anchors (&%s) and aliases are not supported in recipes; write "
                         "each value where it applies", (const char *) anchor);
  if (tag != NULL)
    return recipe_error (reader, line, column, NULL,
                         "YAML tags (%s) are not supported in recipes; quote a value to make it "
                         "a string", (const char *) tag);
  if (type != NODE_SCALAR && build->depth == RECIPE_MAX_DEPTH)
    return recipe_error (reader, line, column, NULL,
                         "nested more than %d levels deep; a recipe needs at most 5",
                         RECIPE_MAX_DEPTH);

  Sam2YamlNode *node = g_new0 (Sam2YamlNode, 1);
  node->type = type;
  node->line = line;
  node->column = column;
  if (type == NODE_SCALAR) {
    /* copied by length: a double-quoted "\0" puts a NUL byte inside the value */
    node->length = event->data.scalar.length;
    node->text = g_malloc (node->length + 1);
    memcpy (node->text, event->data.scalar.value, node->length);
    node->text[node->length] = '\0';
    node->plain = event->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
  } else {
    node->children = g_ptr_array_new_with_free_func (recipe_node_free);
  }
  if (build->depth > 0)
    g_ptr_array_add (build->stack[build->depth - 1]->children, node);
  else
    build->root = node;
  if (type != NODE_SCALAR)
    build->stack[build->depth++] = node;
  return TRUE;
}

static gboolean
recipe_tree_event (Sam2RecipeReader *reader, Sam2YamlBuild *build, const yaml_event_t *event)
{
  const int line = (int) event->start_mark.line + 1, column = (int) event->start_mark.column + 1;
  switch (event->type) {
  case YAML_DOCUMENT_START_EVENT:
    if (++build->documents > 1)
      return recipe_error (reader, line, column, NULL,
                           "a second YAML document; a recipe is one mapping in one document");
    return TRUE;
  case YAML_STREAM_END_EVENT:
    build->done = TRUE;
    return TRUE;
  case YAML_ALIAS_EVENT:
    return recipe_error (reader, line, column, NULL,
                         "YAML aliases (*%s) and anchors are not supported in recipes; write "
                         "each value where it applies", (const char *) event->data.alias.anchor);
  case YAML_SCALAR_EVENT:
    return recipe_tree_add (reader, build, event, NODE_SCALAR, event->data.scalar.anchor,
                            event->data.scalar.tag);
  case YAML_SEQUENCE_START_EVENT:
    return recipe_tree_add (reader, build, event, NODE_SEQUENCE,
                            event->data.sequence_start.anchor, event->data.sequence_start.tag);
  case YAML_MAPPING_START_EVENT:
    return recipe_tree_add (reader, build, event, NODE_MAPPING, event->data.mapping_start.anchor,
                            event->data.mapping_start.tag);
  case YAML_SEQUENCE_END_EVENT:
  case YAML_MAPPING_END_EVENT:
    build->depth--;
    return TRUE;
  case YAML_NO_EVENT:
  case YAML_STREAM_START_EVENT:
  case YAML_DOCUMENT_END_EVENT:
    return TRUE;
  }
  return TRUE;
}

/* The document's root node, or NULL for a text without one (empty, or only comments). */
static gboolean
recipe_read_tree (Sam2RecipeReader *reader, Sam2YamlNode **root)
{
  yaml_parser_t parser;
  Sam2YamlBuild build = { .depth = 0 };
  gboolean ok = TRUE;

  *root = NULL;
  if (!yaml_parser_initialize (&parser))
    return recipe_error (reader, 1, 1, NULL, "out of memory while reading YAML");
  yaml_parser_set_input_string (&parser, (const unsigned char *) reader->text, reader->length);
  while (ok && !build.done) {
    yaml_event_t event;
    if (!yaml_parser_parse (&parser, &event)) {
      ok = recipe_syntax_error (reader, &parser);
      break;
    }
    ok = recipe_tree_event (reader, &build, &event);
    yaml_event_delete (&event);
  }
  yaml_parser_delete (&parser);
  if (!ok) {
    recipe_node_free (build.root);
    return FALSE;
  }
  *root = build.root;
  return TRUE;
}

/* ---- reading scalars ----------------------------------------------------------------------- */

static gboolean
recipe_is_word (const Sam2YamlNode *node, const char *word)
{
  return node->type == NODE_SCALAR && node->plain && node->length == strlen (word)
         && memcmp (node->text, word, node->length) == 0;
}

static gboolean
recipe_is_null (const Sam2YamlNode *node)
{
  return node->type == NODE_SCALAR && node->plain
         && (node->length == 0 || recipe_is_word (node, "~") || recipe_is_word (node, "null"));
}

typedef enum {
  NUMBER_NONE,
  NUMBER_INT,                /* [-+]?(0|[1-9][0-9]*) */
  NUMBER_FLOAT,              /* the YAML 1.2 core float, without .inf and .nan */
} Sam2RecipeNumber;

static gsize
recipe_skip_digits (const char *s, gsize i, gsize n)
{
  while (i < n && g_ascii_isdigit (s[i]))
    i++;
  return i;
}

static Sam2RecipeNumber
recipe_number_form (const Sam2YamlNode *node)
{
  if (node->type != NODE_SCALAR || !node->plain)
    return NUMBER_NONE;
  const char *s = node->text;
  const gsize n = node->length;
  gsize i = 0;
  if (i < n && (s[i] == '-' || s[i] == '+'))
    i++;
  const gsize int_start = i;
  i = recipe_skip_digits (s, i, n);
  const gsize int_digits = i - int_start;
  if (i == n && int_digits > 0)
    return int_digits > 1 && s[int_start] == '0' ? NUMBER_NONE : NUMBER_INT;
  gsize frac_digits = 0;
  if (i < n && s[i] == '.') {
    const gsize start = ++i;
    i = recipe_skip_digits (s, i, n);
    frac_digits = i - start;
  }
  if (int_digits + frac_digits == 0)
    return NUMBER_NONE;
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < n && (s[i] == '-' || s[i] == '+'))
      i++;
    const gsize start = i;
    i = recipe_skip_digits (s, i, n);
    if (i == start)
      return NUMBER_NONE;
  }
  return i == n ? NUMBER_FLOAT : NUMBER_NONE;
}

/* A note on why a scalar was not what it may look like, "" when there is none. */
static const char *
recipe_scalar_hint (const Sam2YamlNode *node)
{
  static const char *const yaml11_booleans[] = {
    "yes", "no", "on", "off", "y", "n", "Yes", "No", "On", "Off", "YES", "NO", "ON", "OFF",
    "True", "False", "TRUE", "FALSE", "Y", "N",
  };
  if (node->type != NODE_SCALAR)
    return "";
  if (!node->plain) {
    Sam2YamlNode plain = *node;
    plain.plain = TRUE;
    if (recipe_number_form (&plain) != NUMBER_NONE || recipe_is_null (&plain)
        || recipe_is_word (&plain, "true") || recipe_is_word (&plain, "false"))
      return " (quoted: remove the quotes)";
    return "";
  }
  for (guint i = 0; i < G_N_ELEMENTS (yaml11_booleans); i++)
    if (recipe_is_word (node, yaml11_booleans[i]))
      return " (only true and false are booleans in a recipe)";
  const gsize sign = node->length > 0 && (node->text[0] == '-' || node->text[0] == '+');
  if (node->length > sign + 1 && node->text[sign] == '0' && g_ascii_isdigit (node->text[sign + 1]))
    return " (leading zeros are refused: YAML 1.1 reads them as an octal number)";
  return "";
}

static char *
recipe_node_describe (const Sam2YamlNode *node)
{
  if (node->type == NODE_MAPPING)
    return g_strdup ("a mapping");
  if (node->type == NODE_SEQUENCE)
    return g_strdup ("a list");
  if (recipe_is_null (node))
    return g_strdup (node->length == 0 ? "nothing (null)" : "null");
  char *quoted = recipe_shown (node->text, node->length, TRUE);
  if (node->plain)
    return quoted;
  char *described = g_strdup_printf ("the string %s", quoted);
  g_free (quoted);
  return described;
}

/* The value of `key` at `node`, for messages about two keys setting one thing: a scalar as
 * written, a list as read (group_shapes: [[1, 64]]), a mapping as {...}. */
static char *
recipe_node_shown (const Sam2YamlNode *node, const Sam2RecipeKey *key,
                   const Sam2RecipeValue *value)
{
  if (node->type == NODE_MAPPING)
    return g_strdup ("{...}");
  if (node->type == NODE_SEQUENCE && key->kind != KIND_SECTION) {
    GString *out = g_string_new (NULL);
    recipe_write_value (out, key, value);
    return g_string_free (out, FALSE);
  }
  if (node->plain && node->length == 0)
    return g_strdup ("null");
  return recipe_shown (node->text, node->length, !node->plain);
}

static gboolean
recipe_type_error (Sam2RecipeReader *reader, const Sam2YamlNode *node, const char *path,
                   const char *accepted)
{
  char *got = recipe_node_describe (node);
  recipe_error (reader, node->line, node->column, path, "expected %s, got %s%s", accepted, got,
                recipe_scalar_hint (node));
  g_free (got);
  return FALSE;
}

static gboolean
recipe_key_type_error (Sam2RecipeReader *reader, const Sam2YamlNode *node, const char *path,
                       const Sam2RecipeKey *key)
{
  char *accepted = recipe_key_accepts (key);
  recipe_type_error (reader, node, path, accepted);
  g_free (accepted);
  return FALSE;
}

static gboolean
recipe_range_error (Sam2RecipeReader *reader, const Sam2YamlNode *node, const char *path,
                    const Sam2RecipeKey *key)
{
  char *accepted = recipe_key_accepts (key);
  char *shown = recipe_shown (node->text, node->length, FALSE);
  recipe_error (reader, node->line, node->column, path, "%s is out of range; use %s", shown,
                accepted);
  g_free (shown);
  g_free (accepted);
  return FALSE;
}

/* A plain decimal integer into [min, max]; `key` describes the accepted values in errors. */
static gboolean
recipe_read_integer (Sam2RecipeReader *reader, const Sam2YamlNode *node, const char *path,
                     const Sam2RecipeKey *key, gint64 min, gint64 max, gint64 *out)
{
  if (recipe_number_form (node) != NUMBER_INT)
    return recipe_key_type_error (reader, node, path, key);
  errno = 0;
  const gint64 value = g_ascii_strtoll (node->text, NULL, 10);
  if (errno == ERANGE || value < min || value > max)
    return recipe_range_error (reader, node, path, key);
  *out = value;
  return TRUE;
}

static gboolean
recipe_read_bool (Sam2RecipeReader *reader, const Sam2YamlNode *node, const char *path,
                  const Sam2RecipeKey *key, Sam2RecipeValue *value)
{
  if (recipe_is_word (node, "true") || recipe_is_word (node, "false")) {
    value->i = recipe_is_word (node, "true");
    return TRUE;
  }
  return recipe_key_type_error (reader, node, path, key);
}

static gboolean
recipe_read_seed (Sam2RecipeReader *reader, const Sam2YamlNode *node, const char *path,
                  const Sam2RecipeKey *key, Sam2RecipeValue *value)
{
  if (recipe_number_form (node) != NUMBER_INT)
    return recipe_key_type_error (reader, node, path, key);
  const char *digits = node->text + (node->text[0] == '-' || node->text[0] == '+');
  errno = 0;
  value->u = g_ascii_strtoull (digits, NULL, 10);
  if (errno == ERANGE || (node->text[0] == '-' && value->u != 0))
    return recipe_range_error (reader, node, path, key);
  return TRUE;
}

static gboolean
recipe_read_double (Sam2RecipeReader *reader, const Sam2YamlNode *node, const char *path,
                    const Sam2RecipeKey *key, double *out)
{
  if (recipe_number_form (node) == NUMBER_NONE)
    return recipe_key_type_error (reader, node, path, key);
  const double value = g_ascii_strtod (node->text, NULL);
  const gboolean below = (key->flags & RECIPE_OPEN_MIN) ? value <= key->min : value < key->min;
  const gboolean above = (key->flags & RECIPE_OPEN_MAX) ? value >= key->max : value > key->max;
  if (!isfinite (value) || below || above)
    return recipe_range_error (reader, node, path, key);
  *out = value;
  return TRUE;
}

static gboolean
recipe_read_choice (Sam2RecipeReader *reader, const Sam2YamlNode *node, const char *path,
                    const Sam2RecipeKey *key, Sam2RecipeValue *value)
{
  const gboolean is_null = recipe_is_null (node);
  if (node->type != NODE_SCALAR || is_null) {
    /* null is a value only where the table names it */
    for (guint i = 0; is_null && i < key->n_choices; i++)
      if (strcmp (key->choices[i].name, "null") == 0) {
        value->i = key->choices[i].value;
        return TRUE;
      }
    return recipe_key_type_error (reader, node, path, key);
  }
  for (guint i = 0; i < key->n_choices; i++) {
    const char *name = key->choices[i].name;
    if (strcmp (name, "null") != 0 && node->length == strlen (name)
        && memcmp (node->text, name, node->length) == 0) {
      value->i = key->choices[i].value;
      return TRUE;
    }
  }
  char *names = recipe_choice_names (key);
  char *shown = recipe_shown (node->text, node->length, TRUE);
  recipe_error (reader, node->line, node->column, path, "%s is not %s; use %s%s", shown,
                key->noun, names, recipe_scalar_hint (node));
  g_free (shown);
  g_free (names);
  return FALSE;
}

/* G: -1 (stored as 0: the whole row) or a multiple of 8 up to 4096. */
static gboolean
recipe_read_group (Sam2RecipeReader *reader, const Sam2YamlNode *node, const char *path,
                   const Sam2RecipeKey *key, Sam2RecipeValue *value)
{
  gint64 g;
  if (!recipe_read_integer (reader, node, path, key, G_MININT64, G_MAXINT64, &g))
    return FALSE;
  if (g == -1) {
    value->i = 0;
    return TRUE;
  }
  if (g < RECIPE_GROUP_MULTIPLE || g > RECIPE_GROUP_MAX || g % RECIPE_GROUP_MULTIPLE != 0) {
    char *shown = recipe_shown (node->text, node->length, FALSE);
    recipe_error (reader, node->line, node->column, path,
                  "%s is not a group size; use " RECIPE_GROUP_TEXT, shown);
    g_free (shown);
    return FALSE;
  }
  value->i = g;
  return TRUE;
}

/* [[1, G]] or [1, G] */
static gboolean
recipe_read_group_shapes (Sam2RecipeReader *reader, const Sam2YamlNode *node, const char *path,
                          const Sam2RecipeKey *key, Sam2RecipeValue *value)
{
  if (node->type != NODE_SEQUENCE)
    return recipe_key_type_error (reader, node, path, key);
  const GPtrArray *items = node->children;
  const Sam2YamlNode *first = items->len > 0 ? items->pdata[0] : NULL;
  const Sam2YamlNode *shape = node;
  char *shape_path = g_strdup (path);
  gboolean ok = FALSE;

  if (first != NULL && first->type == NODE_SEQUENCE) {
    if (items->len != 1) {
      recipe_error (reader, node->line, node->column, path,
                    "%u group shapes; a recipe takes one: [[1, G]] with G " RECIPE_GROUP_TEXT,
                    items->len);
      goto out;
    }
    shape = first;
    g_free (shape_path);
    shape_path = g_strdup_printf ("%s[0]", path);
  }
  if (shape->children->len != 2) {
    recipe_error (reader, shape->line, shape->column, shape_path,
                  "a group shape is [1, G], got %u entries; G is " RECIPE_GROUP_TEXT,
                  shape->children->len);
    goto out;
  }
  const Sam2YamlNode *rows = shape->children->pdata[0], *columns = shape->children->pdata[1];
  char *rows_path = g_strdup_printf ("%s[0]", shape_path);
  char *columns_path = g_strdup_printf ("%s[1]", shape_path);
  gint64 n_rows = 0;
  ok = recipe_read_integer (reader, rows, rows_path, key, G_MININT64, G_MAXINT64, &n_rows);
  if (ok && n_rows != 1)
    ok = recipe_error (reader, rows->line, rows->column, rows_path,
                       "groups span one row, so the first entry of a group shape is 1, not %"
                       G_GINT64_FORMAT, n_rows);
  if (ok)
    ok = recipe_read_group (reader, columns, columns_path, key, value);
  g_free (rows_path);
  g_free (columns_path);
out:
  g_free (shape_path);
  return ok;
}

static gboolean
recipe_read_alpha (Sam2RecipeReader *reader, const Sam2YamlNode *node, const char *path,
                   const Sam2RecipeKey *key, Sam2RecipeValue *value)
{
  if (node->type == NODE_SCALAR && node->length == strlen ("search")
      && memcmp (node->text, "search", node->length) == 0) {
    value->search = TRUE;
    return TRUE;
  }
  const Sam2RecipeKey range = { .kind = KIND_ALPHA, .min = 0.0, .max = 1.0 };
  return recipe_read_double (reader, node, path, &range, &value->d);
}

static gboolean
recipe_read_patterns (Sam2RecipeReader *reader, const Sam2YamlNode *node, const char *path,
                      const Sam2RecipeKey *key, Sam2RecipeValue *value)
{
  if (recipe_is_null (node))
    return TRUE;
  if (node->type != NODE_SEQUENCE)
    return recipe_key_type_error (reader, node, path, key);
  GPtrArray *patterns = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < node->children->len; i++) {
    const Sam2YamlNode *item = node->children->pdata[i];
    const char *problem = NULL;
    if (item->type != NODE_SCALAR || recipe_is_null (item))
      problem = "expected a glob pattern (a string)";
    else if (recipe_number_form (item) != NUMBER_NONE || recipe_is_word (item, "true")
             || recipe_is_word (item, "false"))
      /* plain true and 3 are a boolean and a number in YAML (PyYAML, DeepCompressor), not the
       * pattern "true" or "3" */
      problem = "expected a glob pattern (a string; quote it if it is one)";
    else if (item->length == 0)
      problem = "an empty pattern matches no layer";
    else if (memchr (item->text, '\0', item->length) != NULL)
      problem = "a pattern cannot hold a NUL character";
    if (problem != NULL) {
      char *item_path = g_strdup_printf ("%s[%u]", path, i);
      char *got = recipe_node_describe (item);
      recipe_error (reader, item->line, item->column, item_path, "%s, got %s", problem, got);
      g_free (got);
      g_free (item_path);
      g_ptr_array_unref (patterns);
      return FALSE;
    }
    g_ptr_array_add (patterns, g_strdup (item->text));
  }
  if (patterns->len > 0) {
    g_ptr_array_add (patterns, NULL);
    value->strv = (char **) g_ptr_array_free (patterns, FALSE);
  } else {
    g_ptr_array_unref (patterns);
  }
  return TRUE;
}

/* ---- reading keys -------------------------------------------------------------------------- */

/* Sets the field of `key`, unless another spelling set it already: then the two must agree.
 * Takes the value's strings when it sets the field; the caller frees what is left. */
static gboolean
recipe_assign (Sam2RecipeReader *reader, const Sam2RecipeKey *key, const char *path,
               const Sam2YamlNode *node, Sam2RecipeValue *value)
{
  for (guint i = 0; i < reader->assignments->len; i++) {
    const Sam2RecipeAssignment *earlier = reader->assignments->pdata[i];
    if (earlier->offset != key->offset)
      continue;
    if (recipe_value_equal (&earlier->value, value))
      return TRUE;
    char *shown = recipe_node_shown (node, key, value);
    recipe_error (reader, node->line, node->column, path,
                  "%s differs from %s: %s at line %d, column %d; the two keys spell the same "
                  "setting, give it once", shown, earlier->path, earlier->shown, earlier->line,
                  earlier->column);
    g_free (shown);
    return FALSE;
  }
  Sam2RecipeAssignment *a = g_new0 (Sam2RecipeAssignment, 1);
  a->offset = key->offset;
  a->path = g_strdup (path);
  a->line = node->line;
  a->column = node->column;
  a->shown = recipe_node_shown (node, key, value);
  a->value = *value;
  a->value.strv = g_strdupv (value->strv);
  g_ptr_array_add (reader->assignments, a);
  recipe_value_set (key, reader->recipe, value);
  return TRUE;
}

static gboolean recipe_read_mapping (Sam2RecipeReader *reader, const Sam2YamlNode *node,
                                     const Sam2RecipeKey *keys, guint n_keys, const char *path);

static gboolean
recipe_read_section (Sam2RecipeReader *reader, const Sam2RecipeKey *key, const Sam2YamlNode *node,
                     const char *path)
{
  Sam2RecipeValue value = { 0 };
  if ((recipe_is_null (node) && (key->flags & RECIPE_NULL_OFF))
      || (recipe_is_word (node, "false") && (key->flags & RECIPE_FALSE_OFF))) {
    value.i = key->off;
    return recipe_assign (reader, key, path, node, &value);
  }
  if (recipe_is_word (node, "true") && (key->flags & RECIPE_FALSE_OFF))
    return recipe_error (reader, node->line, node->column, path,
                         "true is not accepted; write a mapping of its settings ({} for the "
                         "defaults) to turn it on, or false to turn it off");
  if (node->type != NODE_MAPPING)
    return recipe_key_type_error (reader, node, path, key);
  if (key->flags & RECIPE_MAPPING_ON) {
    value.i = key->on;
    if (!recipe_assign (reader, key, path, node, &value))
      return FALSE;
  }
  return recipe_read_mapping (reader, node, key->keys, key->n_keys, path);
}

static gboolean
recipe_read_key (Sam2RecipeReader *reader, const Sam2RecipeKey *key, const Sam2YamlNode *node,
                 const char *path)
{
  Sam2RecipeValue value = { 0 };
  gboolean ok = FALSE;
  switch (key->kind) {
  case KIND_SECTION:
    return recipe_read_section (reader, key, node, path);
  case KIND_BOOL:
    ok = recipe_read_bool (reader, node, path, key, &value);
    break;
  case KIND_INT:
    ok = recipe_read_integer (reader, node, path, key, (gint64) key->min, (gint64) key->max,
                              &value.i);
    break;
  case KIND_SEED:
    ok = recipe_read_seed (reader, node, path, key, &value);
    break;
  case KIND_DOUBLE:
    ok = recipe_read_double (reader, node, path, key, &value.d);
    break;
  case KIND_CHOICE:
    ok = recipe_read_choice (reader, node, path, key, &value);
    break;
  case KIND_GROUP_SHAPES:
    ok = recipe_read_group_shapes (reader, node, path, key, &value);
    break;
  case KIND_GROUP_SIZE:
    ok = recipe_read_group (reader, node, path, key, &value);
    break;
  case KIND_ALPHA:
    ok = recipe_read_alpha (reader, node, path, key, &value);
    break;
  case KIND_PATTERNS:
    ok = recipe_read_patterns (reader, node, path, key, &value);
    break;
  }
  ok = ok && recipe_assign (reader, key, path, node, &value);
  g_strfreev (value.strv);
  return ok;
}

/* The canonical paths whose last key is `name`, for a hint after an unknown key. */
static void
recipe_find_key (const Sam2RecipeKey *keys, guint n_keys, const char *prefix, const char *name,
                 gsize length, GString *found)
{
  for (guint i = 0; i < n_keys; i++) {
    const Sam2RecipeKey *key = &keys[i];
    if (key->alias_of != NULL)
      continue;
    if (strlen (key->name) == length && memcmp (key->name, name, length) == 0)
      g_string_append_printf (found, "%s%s", found->len > 0 ? ", " : "",
                              *prefix != '\0' ? prefix : "the top level");
    if (key->kind == KIND_SECTION) {
      char *path = recipe_path (prefix, key->name);
      recipe_find_key (key->keys, key->n_keys, path, name, length, found);
      g_free (path);
    }
  }
}

static gboolean
recipe_unknown_key (Sam2RecipeReader *reader, const Sam2YamlNode *key_node,
                    const Sam2RecipeKey *keys, guint n_keys, const char *path)
{
  GString *allowed = g_string_new (NULL);
  for (guint i = 0; i < n_keys; i++)
    g_string_append_printf (allowed, "%s%s", i > 0 ? ", " : "", keys[i].name);
  GString *found = g_string_new (NULL);
  recipe_find_key (top_keys, G_N_ELEMENTS (top_keys), "", key_node->text, key_node->length, found);
  char *name = key_node->length > 0 ? recipe_shown (key_node->text, key_node->length, FALSE)
                                    : g_strdup ("\"\"");
  char *key_path = recipe_path (path, name);
  char *where = *path != '\0' ? g_strdup_printf ("of %s", path) : g_strdup ("at the top level");
  char *hint = found->len > 0 ? g_strdup_printf ("; %s is a key of %s", name, found->str)
                              : g_strdup ("");
  recipe_error (reader, key_node->line, key_node->column, key_path,
                "unknown key; the keys %s are %s%s", where, allowed->str, hint);
  g_free (hint);
  g_free (where);
  g_free (key_path);
  g_free (name);
  g_string_free (found, TRUE);
  g_string_free (allowed, TRUE);
  return FALSE;
}

static const Sam2RecipeKey *
recipe_lookup (const Sam2RecipeKey *keys, guint n_keys, const Sam2YamlNode *key_node)
{
  for (guint i = 0; i < n_keys; i++)
    if (strlen (keys[i].name) == key_node->length
        && memcmp (keys[i].name, key_node->text, key_node->length) == 0)
      return &keys[i];
  return NULL;
}

static gboolean
recipe_read_mapping (Sam2RecipeReader *reader, const Sam2YamlNode *node,
                     const Sam2RecipeKey *keys, guint n_keys, const char *path)
{
  for (guint i = 0; i + 1 < node->children->len; i += 2) {
    const Sam2YamlNode *key_node = node->children->pdata[i];
    const Sam2YamlNode *value = node->children->pdata[i + 1];
    if (key_node->type != NODE_SCALAR)
      return recipe_error (reader, key_node->line, key_node->column, path,
                           "a key must be a name, not %s",
                           key_node->type == NODE_MAPPING ? "a mapping" : "a list");
    const Sam2RecipeKey *key = recipe_lookup (keys, n_keys, key_node);
    if (key == NULL)
      return recipe_unknown_key (reader, key_node, keys, n_keys, path);
    /* keys are known and distinct until here, so this scan stays short */
    for (guint j = 0; j < i; j += 2) {
      const Sam2YamlNode *earlier = node->children->pdata[j];
      if (earlier->length == key_node->length
          && memcmp (earlier->text, key_node->text, key_node->length) == 0) {
        char *key_path = recipe_path (path, key->name);
        recipe_error (reader, key_node->line, key_node->column, key_path,
                      "duplicate key; it was given at line %d, column %d already", earlier->line,
                      earlier->column);
        g_free (key_path);
        return FALSE;
      }
    }
    char *key_path = recipe_path (path, key->name);
    const gboolean ok = recipe_read_key (reader, key, value, key_path);
    g_free (key_path);
    if (!ok)
      return FALSE;
  }
  return TRUE;
}

static gboolean
recipe_read_root (Sam2RecipeReader *reader, const Sam2YamlNode *root)
{
  if (root == NULL || recipe_is_null (root))
    return TRUE;
  if (root->type != NODE_MAPPING) {
    GString *allowed = g_string_new (NULL);
    for (guint i = 0; i < G_N_ELEMENTS (top_keys); i++)
      g_string_append_printf (allowed, "%s%s", i > 0 ? ", " : "", top_keys[i].name);
    char *got = recipe_node_describe (root);
    recipe_error (reader, root->line, root->column, NULL,
                  "a recipe is a mapping of the keys %s; got %s", allowed->str, got);
    g_free (got);
    g_string_free (allowed, TRUE);
    return FALSE;
  }
  return recipe_read_mapping (reader, root, top_keys, G_N_ELEMENTS (top_keys), "");
}

/* Where the setting at `offset` was given, or NULL when the recipe left it at its default. */
static const Sam2RecipeAssignment *
recipe_find_assignment (const Sam2RecipeReader *reader, size_t offset)
{
  for (guint i = 0; i < reader->assignments->len; i++) {
    const Sam2RecipeAssignment *a = reader->assignments->pdata[i];
    if (a->offset == offset)
      return a;
  }
  return NULL;
}

/* Settings that each parse but that the quantizer could not honour together: an error at the
 * key that would be ignored (it was ignored silently, and still written into the model file's
 * recipe as if it had run). */
static gboolean
recipe_check_combinations (Sam2RecipeReader *reader)
{
  const Sam2Recipe *r = reader->recipe;
  const Sam2RecipeAssignment *a;
  if (r->smooth.enabled && r->ipts.dtype == SAM2_QTYPE_NONE
      && (a = recipe_find_assignment (reader, OFF (smooth.enabled))) != NULL)
    return recipe_error (reader, a->line, a->column, a->path,
                         "smoothing moves activation outliers into the weights ahead of the "
                         "activations' 8-bit quantization, and quant.ipts is null (weights "
                         "only): set %s to false, or quantize the activations", a->path);
  if (!r->ipts.post_gelu_asymmetric && r->ipts.dtype != SAM2_QTYPE_SINT8
      && (a = recipe_find_assignment (reader, OFF (ipts.post_gelu_asymmetric))) != NULL)
    return recipe_error (reader, a->line, a->column, a->path,
                         "symmetric post-GELU inputs need quant.ipts.dtype sint8 (with uint8 "
                         "every input is asymmetric; with null none is quantized); leave it out "
                         "or use sint8");
  return TRUE;
}

/* ---- public API ------------------------------------------------------------------------------ */

void
sam2_recipe_init_defaults (Sam2Recipe *recipe)
{
  g_return_if_fail (recipe != NULL);
  memset (recipe, 0, sizeof *recipe);
  recipe->name = g_strdup ("default");
  recipe->wgts = (Sam2WeightRecipe) {
    .dtype = SAM2_QTYPE_SINT4, .group_size = 128, .gptq = TRUE, .gptq_damp = 0.01,
    .gptq_block = 128, .gptq_act_order = TRUE, .gptq_inv_tries = 10,
    .range_search = FALSE, .range_max_shrink = 0.2, .range_grids = 20, .range_products = TRUE,
  };
  recipe->ipts = (Sam2ActRecipe) {
    .dtype = SAM2_QTYPE_SINT8, .per_tensor = FALSE, .post_gelu_asymmetric = TRUE,
  };
  recipe->smooth = (Sam2SmoothRecipe) {
    .enabled = FALSE, .alpha = 0.5, .search = FALSE, .grid = 20, .fold = TRUE,
  };
  recipe->low_rank = (Sam2LowRankRecipe) { .rank = 0, .exclusive = FALSE, .compensate = FALSE };
  recipe->calib = (Sam2CalibRecipe) {
    .num_samples = 128, .batch_size = 1, .max_tokens = 4096, .keep_tokens = 512, .seed = 0,
  };
  recipe->skips = (Sam2SkipRecipe) {
    .patch_embed = TRUE, .first_block = FALSE, .last_block = FALSE, .decoder = TRUE,
    .patterns = NULL, .keep_float32 = FALSE,
  };
}

void
sam2_recipe_clear (Sam2Recipe *recipe)
{
  if (recipe == NULL)
    return;
  g_clear_pointer (&recipe->name, g_free);
  g_clear_pointer (&recipe->skips.patterns, g_strfreev);
}

/* "configs/hiera_tiny_w4a8.yaml" -> "hiera_tiny_w4a8"; "<string>" and the like -> "custom" */
static char *
recipe_name_from_source (const char *source)
{
  if (source[0] == '\0' || source[0] == '<')
    return g_strdup ("custom");
  char *name = g_path_get_basename (source);
  char *dot = strrchr (name, '.');
  if (dot != NULL && dot != name)
    *dot = '\0';
  return name;
}

Sam2Recipe *
sam2_recipe_parse (const char *text, gssize length, const char *source, GError **error)
{
  g_return_val_if_fail (text != NULL || length == 0, NULL);
  if (source == NULL)
    source = "<string>";
  const gsize n = text == NULL ? 0 : length < 0 ? strlen (text) : (gsize) length;
  if (n > RECIPE_MAX_BYTES) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG,
                 "%s: %" G_GSIZE_FORMAT " bytes; a recipe is at most %d bytes (1 MiB)", source, n,
                 RECIPE_MAX_BYTES);
    return NULL;
  }

  Sam2Recipe *recipe = g_new0 (Sam2Recipe, 1);
  sam2_recipe_init_defaults (recipe);
  g_free (recipe->name);
  recipe->name = recipe_name_from_source (source);
  Sam2RecipeReader reader = {
    .source = source, .text = text != NULL ? text : "", .length = n, .recipe = recipe,
    .assignments = g_ptr_array_new_with_free_func (recipe_assignment_free), .error = error,
  };
  Sam2YamlNode *root = NULL;
  const gboolean ok = recipe_read_tree (&reader, &root) && recipe_read_root (&reader, root)
                      && recipe_check_combinations (&reader);
  recipe_node_free (root);
  g_ptr_array_unref (reader.assignments);
  if (!ok) {
    sam2_recipe_free (recipe);
    return NULL;
  }
  return recipe;
}

Sam2Recipe *
sam2_recipe_load (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  char *text;
  gsize length;
  GError *io_error = NULL;
  if (!g_file_get_contents (path, &text, &length, &io_error)) {
    g_set_error (error, SAM2_ERROR, SAM2_ERROR_IO, "cannot read recipe %s: %s", path,
                 io_error->message);
    g_error_free (io_error);
    return NULL;
  }
  Sam2Recipe *recipe = sam2_recipe_parse (text, (gssize) length, path, error);
  g_free (text);
  return recipe;
}

char *
sam2_quantized_file_name (const char *model_ref, const Sam2Recipe *recipe)
{
  g_return_val_if_fail (model_ref != NULL, NULL);
  /* an hub id's "@revision" goes before the shortcut lookup ("tiny@main" is tiny); a path that
   * exists keeps an "@" of its own */
  char *ref = g_strdup (model_ref);
  char *at = g_file_test (ref, G_FILE_TEST_EXISTS) ? NULL : strchr (ref, '@');
  if (at != NULL)
    *at = '\0';
  const char *id = sam2_hub_shortcut_id (ref);
  /* a directory named by "." or ".." (or with a trailing slash) takes its real name: the file
   * would otherwise be ".-default.safetensors", hidden */
  char *canonical = id == NULL ? g_canonicalize_filename (ref, NULL) : NULL;
  char *stem = g_path_get_basename (id != NULL ? id : canonical);
  /* a checkpoint named by one of its files (model.safetensors, config.json) is its directory */
  if (id == NULL && (g_str_has_suffix (stem, ".safetensors") || g_str_has_suffix (stem, ".json"))) {
    char *dir = g_path_get_dirname (canonical);
    g_free (stem);
    stem = g_path_get_basename (dir);
    g_free (dir);
  }
  char *file = g_strdup_printf ("%s-%s.safetensors", stem,
                                recipe != NULL ? recipe->name : "default");
  g_free (canonical);
  g_free (stem);
  g_free (ref);
  return file;
}

Sam2Recipe *
sam2_recipe_copy (const Sam2Recipe *recipe)
{
  g_return_val_if_fail (recipe != NULL, NULL);
  Sam2Recipe *copy = g_new (Sam2Recipe, 1);
  *copy = *recipe;
  copy->name = g_strdup (recipe->name);
  copy->skips.patterns = g_strdupv (recipe->skips.patterns);
  return copy;
}

void
sam2_recipe_free (Sam2Recipe *recipe)
{
  if (recipe == NULL)
    return;
  sam2_recipe_clear (recipe);
  g_free (recipe);
}

static void
recipe_write_section (GString *out, const Sam2RecipeKey *keys, guint n_keys,
                      const Sam2Recipe *recipe, int indent)
{
  for (guint i = 0; i < n_keys; i++) {
    const Sam2RecipeKey *key = &keys[i];
    if (key->alias_of != NULL)
      continue;
    g_string_append_printf (out, "%*s%s:", indent, "", key->name);
    if (key->kind != KIND_SECTION) {
      Sam2RecipeValue value = recipe_value_get (key, recipe);
      g_string_append_c (out, ' ');
      recipe_write_value (out, key, &value);
      g_string_append_c (out, '\n');
    } else if ((key->flags & RECIPE_WRITE_OFF) && *FIELD_C (recipe, key->offset, int) == key->off) {
      g_string_append (out, " false\n");
    } else {
      g_string_append_c (out, '\n');
      recipe_write_section (out, key->keys, key->n_keys, recipe, indent + 2);
    }
  }
}

/* The first line of sam2_recipe_to_yaml: NAME_PREFIX, the escaped name, NAME_SUFFIX. */
#define NAME_PREFIX "# sam2 quantization recipe \""
#define NAME_SUFFIX "\", every key resolved"

char *
sam2_recipe_to_yaml (const Sam2Recipe *recipe)
{
  g_return_val_if_fail (recipe != NULL, NULL);
  GString *out = g_string_new (NAME_PREFIX);
  /* the name is only a comment: escaped, it cannot end the comment line */
  char *name = g_strescape (recipe->name != NULL ? recipe->name : "", NULL);
  g_string_append_printf (out, "%s" NAME_SUFFIX "\n", name);
  g_free (name);
  recipe_write_section (out, top_keys, G_N_ELEMENTS (top_keys), recipe, 0);
  return g_string_free (out, FALSE);
}

char *
sam2_recipe_statistics_yaml (const Sam2Recipe *recipe)
{
  Sam2Recipe *r = sam2_recipe_copy (recipe);
  r->calib.batch_size = 1;
  char *yaml = sam2_recipe_to_yaml (r);
  sam2_recipe_free (r);
  return yaml;
}

char *
sam2_recipe_yaml_name (const char *yaml)
{
  if (yaml == NULL || !g_str_has_prefix (yaml, NAME_PREFIX))
    return NULL;
  /* the suffix ends the line: a name may hold the suffix's own text ("x\", every key resolved") */
  const char *start = yaml + strlen (NAME_PREFIX), *eol = strchr (start, '\n');
  if (eol == NULL)
    eol = start + strlen (start);
  const size_t suffix = strlen (NAME_SUFFIX);
  if ((size_t) (eol - start) < suffix || memcmp (eol - suffix, NAME_SUFFIX, suffix) != 0)
    return NULL;
  const char *end = eol - suffix;
  /* written escaped (g_strescape): printable ASCII, returned as it is */
  for (const char *p = start; p < end; p++)
    if (!g_ascii_isprint (*p))
      return NULL;
  return g_strndup (start, end - start);
}

static gboolean
recipe_section_equal (const Sam2RecipeKey *keys, guint n_keys, const Sam2Recipe *a,
                      const Sam2Recipe *b)
{
  for (guint i = 0; i < n_keys; i++) {
    const Sam2RecipeKey *key = &keys[i];
    if (key->alias_of != NULL)
      continue;
    if (key->kind != KIND_SECTION) {
      Sam2RecipeValue va = recipe_value_get (key, a), vb = recipe_value_get (key, b);
      if (!recipe_value_equal (&va, &vb))
        return FALSE;
      continue;
    }
    if (recipe_has_switch (key)) {
      const int on_a = *FIELD_C (a, key->offset, int), on_b = *FIELD_C (b, key->offset, int);
      if (on_a != on_b)
        return FALSE;
      if ((key->flags & RECIPE_WRITE_OFF) && on_a == key->off)
        continue;
    }
    if (!recipe_section_equal (key->keys, key->n_keys, a, b))
      return FALSE;
  }
  return TRUE;
}

gboolean
sam2_recipe_equal (const Sam2Recipe *a, const Sam2Recipe *b)
{
  if (a == NULL || b == NULL)
    return a == b;
  return recipe_section_equal (top_keys, G_N_ELEMENTS (top_keys), a, b);
}

gboolean
sam2_recipe_pattern_skips (const Sam2Recipe *recipe, const char *layer_name)
{
  g_return_val_if_fail (recipe != NULL && layer_name != NULL, FALSE);
  for (char **p = recipe->skips.patterns; p != NULL && *p != NULL; p++)
    if (fnmatch (*p, layer_name, 0) == 0)
      return TRUE;
  return FALSE;
}
