/* test-recipe.c: quantization recipes (core/quant/recipe.h): defaults, the shipped configs,
 * round trips through sam2_recipe_to_yaml, aliases, and errors that point at the right key,
 * line and column. */
#include "recipe.h"
#include "sam2.h"

#include <glib/gstdio.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------- */

static Sam2Recipe *
parse_ok (const char *text)
{
  GError *error = NULL;
  Sam2Recipe *recipe = sam2_recipe_parse (text, -1, "<string>", &error);
  if (recipe == NULL)
    g_error ("parse failed: %s\nfor:\n%s", error->message, text);
  return recipe;
}

/* Parse must fail with SAM2_ERROR_CONFIG, a message starting with `prefix` (source, line,
 * column, key path) and holding `needle`. */
static void
assert_parse_error (const char *text, const char *prefix, const char *needle)
{
  GError *error = NULL;
  Sam2Recipe *recipe = sam2_recipe_parse (text, -1, "<string>", &error);
  if (recipe != NULL)
    g_error ("parse unexpectedly succeeded for:\n%s", text);
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG);
  if (!g_str_has_prefix (error->message, prefix))
    g_error ("message \"%s\" does not start with \"%s\"\nfor:\n%s", error->message, prefix, text);
  if (needle != NULL && strstr (error->message, needle) == NULL)
    g_error ("message \"%s\" lacks \"%s\"\nfor:\n%s", error->message, needle, text);
  g_test_message ("ok: %s", error->message);
  g_error_free (error);
}

/* The YAML after its first line (the comment naming the recipe). */
static const char *
yaml_body (const char *yaml)
{
  const char *newline = strchr (yaml, '\n');
  g_assert_nonnull (newline);
  return newline + 1;
}

/* to_yaml, parse back, compare; and the text written again is the same. */
static void
assert_round_trip (const Sam2Recipe *recipe)
{
  char *yaml = sam2_recipe_to_yaml (recipe);
  Sam2Recipe *back = parse_ok (yaml);
  if (!sam2_recipe_equal (recipe, back))
    g_error ("round trip changed the recipe:\n%s", yaml);
  char *again = sam2_recipe_to_yaml (back);
  g_assert_cmpstr (yaml_body (again), ==, yaml_body (yaml));
  g_free (again);
  sam2_recipe_free (back);
  g_free (yaml);
}

/* `text` and `expected` parse to equal recipes. */
static void
assert_same (const char *text, const char *expected)
{
  Sam2Recipe *a = parse_ok (text), *b = parse_ok (expected);
  if (!sam2_recipe_equal (a, b)) {
    char *ya = sam2_recipe_to_yaml (a), *yb = sam2_recipe_to_yaml (b);
    g_error ("\n%s\nreads as\n%s\nbut\n%s\nreads as\n%s", text, ya, expected, yb);
  }
  sam2_recipe_free (a);
  sam2_recipe_free (b);
}

/* ---- defaults ------------------------------------------------------------------------------ */

static void
check_defaults (const Sam2Recipe *r)
{
  g_assert_cmpint (r->wgts.dtype, ==, SAM2_QTYPE_SINT4);
  g_assert_cmpint (r->wgts.group_size, ==, 128);
  g_assert_true (r->wgts.gptq);
  g_assert_cmpfloat (r->wgts.gptq_damp, ==, 0.01);
  g_assert_cmpint (r->wgts.gptq_block, ==, 128);
  g_assert_true (r->wgts.gptq_act_order);
  g_assert_cmpint (r->wgts.gptq_inv_tries, ==, 10);
  g_assert_cmpint (r->ipts.dtype, ==, SAM2_QTYPE_SINT8);
  g_assert_false (r->ipts.per_tensor);
  g_assert_true (r->ipts.post_gelu_asymmetric);
  g_assert_false (r->smooth.enabled);
  g_assert_cmpfloat (r->smooth.alpha, ==, 0.5);
  g_assert_false (r->smooth.search);
  g_assert_cmpint (r->smooth.grid, ==, 20);
  g_assert_true (r->smooth.fold);
  g_assert_cmpint (r->low_rank.rank, ==, 0);
  g_assert_false (r->low_rank.exclusive);
  g_assert_false (r->low_rank.compensate);
  g_assert_cmpint (r->calib.num_samples, ==, 128);
  g_assert_cmpint (r->calib.batch_size, ==, 1);
  g_assert_cmpint (r->calib.max_tokens, ==, 4096);
  g_assert_cmpint (r->calib.keep_tokens, ==, 512);
  g_assert_cmpuint (r->calib.seed, ==, 0);
  g_assert_true (r->skips.patch_embed);
  g_assert_false (r->skips.first_block);
  g_assert_false (r->skips.last_block);
  g_assert_true (r->skips.decoder);
  g_assert_null (r->skips.patterns);
}

static void
test_defaults (void)
{
  Sam2Recipe defaults;
  sam2_recipe_init_defaults (&defaults);
  g_assert_cmpstr (defaults.name, ==, "default");
  check_defaults (&defaults);

  /* texts without settings are the defaults; a string source names the recipe "custom" */
  const char *empty[] = { "", "# only a comment\n", "---\n", "--- ~\n", "null\n", "{}\n",
                          "\n\n   \n" };
  for (guint i = 0; i < G_N_ELEMENTS (empty); i++) {
    Sam2Recipe *r = parse_ok (empty[i]);
    check_defaults (r);
    g_assert_true (sam2_recipe_equal (r, &defaults));
    g_assert_cmpstr (r->name, ==, "custom");
    sam2_recipe_free (r);
  }
  GError *error = NULL;
  Sam2Recipe *r = sam2_recipe_parse (NULL, 0, NULL, &error);
  g_assert_no_error (error);
  check_defaults (r);
  g_assert_cmpstr (r->name, ==, "custom");
  sam2_recipe_free (r);

  /* length bounds the text: what follows is not read */
  r = sam2_recipe_parse ("calib: {seed: 7}garbage", 16, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (r->calib.seed, ==, 7);
  sam2_recipe_free (r);

  assert_round_trip (&defaults);
  sam2_recipe_clear (&defaults);
  g_assert_null (defaults.name);
  sam2_recipe_clear (&defaults);
  sam2_recipe_clear (NULL);
}

/* ---- shipped configs ----------------------------------------------------------------------- */

static char *
configs_dir (void)
{
  const char *root = g_getenv ("SAM2_SOURCE_ROOT");
  if (root != NULL)
    return g_build_filename (root, "configs", NULL);
  const char *data = g_getenv ("SAM2_TEST_DATA");
  g_assert_nonnull (data);   /* set by tests/meson.build */
  return g_build_filename (data, "..", "..", "configs", NULL);
}

static void
check_w4a8 (const Sam2Recipe *r, int group_size)
{
  g_assert_cmpint (r->wgts.dtype, ==, SAM2_QTYPE_SINT4);
  g_assert_cmpint (r->wgts.group_size, ==, group_size);
  g_assert_true (r->wgts.gptq);
  g_assert_true (r->wgts.gptq_act_order);
  g_assert_cmpint (r->ipts.dtype, ==, SAM2_QTYPE_SINT8);
  g_assert_false (r->ipts.per_tensor);
  g_assert_true (r->ipts.post_gelu_asymmetric);
  g_assert_true (r->smooth.enabled);
  g_assert_true (r->smooth.fold);
  g_assert_true (r->skips.patch_embed);
  g_assert_true (r->skips.decoder);
}

static void
check_config (const Sam2Recipe *r)
{
  if (strcmp (r->name, "hiera_tiny_w4only") == 0) {
    g_assert_cmpint (r->wgts.dtype, ==, SAM2_QTYPE_SINT4);
    g_assert_cmpint (r->wgts.group_size, ==, 128);
    g_assert_true (r->wgts.gptq && r->wgts.gptq_act_order);
    g_assert_cmpint (r->ipts.dtype, ==, SAM2_QTYPE_NONE);
    g_assert_false (r->smooth.enabled);
    g_assert_cmpint (r->low_rank.rank, ==, 0);
    /* the first two stages stay float, the third is quantized */
    g_assert_true (sam2_recipe_pattern_skips (r, "vision_encoder.backbone.blocks.0.attn.qkv"));
    g_assert_true (sam2_recipe_pattern_skips (r, "vision_encoder.backbone.blocks.2.mlp.proj_out"));
    g_assert_false (sam2_recipe_pattern_skips (r, "vision_encoder.backbone.blocks.3.attn.qkv"));
    g_assert_false (sam2_recipe_pattern_skips (r, "vision_encoder.backbone.blocks.10.mlp.proj_in"));
  } else if (strcmp (r->name, "hiera_tiny_w4a8") == 0
             || strcmp (r->name, "hiera_small_w4a8") == 0) {
    check_w4a8 (r, 128);
    g_assert_false (r->smooth.search);
    g_assert_cmpfloat (r->smooth.alpha, ==, 0.5);
    g_assert_cmpint (r->low_rank.rank, ==, 0);
  } else if (strcmp (r->name, "hiera_base_w4a8") == 0) {
    check_w4a8 (r, 64);
    g_assert_false (r->smooth.search);
    g_assert_cmpfloat (r->smooth.alpha, ==, 0.5);
    g_assert_cmpint (r->low_rank.rank, ==, 0);
  } else if (strcmp (r->name, "hiera_tiny_w4a8_svdquant") == 0) {
    check_w4a8 (r, 64);
    g_assert_true (r->smooth.search);
    g_assert_cmpint (r->low_rank.rank, ==, 16);
    g_assert_false (r->low_rank.exclusive);
    g_assert_false (r->low_rank.compensate);
    /* the first two stages stay float (chosen on the shapes tuning set), the third is not */
    g_assert_true (sam2_recipe_pattern_skips (r, "vision_encoder.backbone.blocks.1.attn.qkv"));
    g_assert_true (sam2_recipe_pattern_skips (r, "vision_encoder.backbone.blocks.2.mlp.proj_out"));
    g_assert_false (sam2_recipe_pattern_skips (r, "vision_encoder.backbone.blocks.3.attn.qkv"));
  } else if (strcmp (r->name, "hiera_large_w4a8_svdquant") == 0) {
    check_w4a8 (r, 64);
    g_assert_true (r->smooth.search);
    g_assert_cmpint (r->low_rank.rank, ==, 32);
    g_assert_false (r->low_rank.exclusive);
    g_assert_false (r->low_rank.compensate);
  }
}

static void
test_configs (void)
{
  static const char *const expected[] = {
    "hiera_tiny_w4only", "hiera_tiny_w4a8", "hiera_tiny_w4a8_svdquant", "hiera_small_w4a8",
    "hiera_base_w4a8", "hiera_large_w4a8_svdquant",
  };
  char *dir_path = configs_dir ();
  GError *error = NULL;
  GDir *dir = g_dir_open (dir_path, 0, &error);
  g_assert_no_error (error);
  GHashTable *seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  const char *file;
  while ((file = g_dir_read_name (dir)) != NULL) {
    if (!g_str_has_suffix (file, ".yaml"))
      continue;
    char *path = g_build_filename (dir_path, file, NULL);
    Sam2Recipe *r = sam2_recipe_load (path, &error);
    if (r == NULL)
      g_error ("%s", error->message);
    char *name = g_strndup (file, strlen (file) - strlen (".yaml"));
    g_assert_cmpstr (r->name, ==, name);
    check_config (r);
    assert_round_trip (r);
    g_test_message ("%s: ok", path);
    g_hash_table_add (seen, name);
    sam2_recipe_free (r);
    g_free (path);
  }
  g_dir_close (dir);
  for (guint i = 0; i < G_N_ELEMENTS (expected); i++)
    if (!g_hash_table_contains (seen, expected[i]))
      g_error ("%s/%s.yaml is missing", dir_path, expected[i]);
  g_hash_table_unref (seen);
  g_free (dir_path);
}

/* ---- round trips and equality -------------------------------------------------------------- */

static void
test_round_trip (void)
{
  static const char *const texts[] = {
    "quant:\n"
    "  wgts: {dtype: uint4, group_shapes: [1, -1], kernel_gptq: false}\n"
    "  ipts: {dtype: sint8, granularity: per_tensor, post_gelu: symmetric}\n"
    "smooth: {alpha: 0.3, grid: 2, fold: false}\n"
    "low_rank: {rank: 1024, exclusive: true, compensate: true}\n"
    "calib: {num_samples: 100000, batch_size: 32, max_tokens: 0, keep_tokens: 65536,\n"
    "        seed: 18446744073709551615}\n"
    "skips: {patch_embed: false, first_block: true, last_block: true, decoder: false}\n",
    /* numbers that need every digit or an exponent to come back exactly */
    "quant: {wgts: {kernel_gptq: {damp_percentage: 1e-07, block_size: 1, num_inv_tries: 100}}}\n"
    "smooth: {alpha: 0.1234567890123456789, grid: 1000}\n",
    "quant: {wgts: {kernel_gptq: {damp_percentage: 0.99999999999999989}}}\n",
    "smooth: {alpha: search}\nlow_rank: {rank: 0, exclusive: true}\n",
    "quant: {ipts: null}\n",
    "quant: {ipts: {dtype: uint8}}\n",
    "quant: {wgts: {group_size: 4096}}\n",
    "quant: {wgts: {group_size: 8}}\n",
    "quant: {wgts: {calib_range: {max_shrink: 0.35, num_grids: 7, objective: tensor_error}}}\n",
    "quant: {wgts: {calib_range: {}}}\n",
    /* patterns with everything a YAML string must escape */
    "skips:\n"
    "  patterns:\n"
    "    - \"*.attn.proj\"\n"
    "    - 'vision_encoder.backbone.blocks.[0-3].mlp.*'\n"
    "    - \"quote \\\" backslash \\\\ tab \\t newline \\n bell \\a\"\n"
    "    - \"next line \\N, line separator \\L, bom \\uFEFF, e-acute \\u00E9, emoji \\U0001F600\"\n"
    "    - \"#not a comment\"\n"
    "    - \"- not a list\"\n"
    "    - plain: text\n",
  };
  for (guint i = 0; i < G_N_ELEMENTS (texts); i++) {
    /* the last text puts a mapping in the list on purpose: checked below */
    if (i + 1 == G_N_ELEMENTS (texts))
      continue;
    Sam2Recipe *r = parse_ok (texts[i]);
    assert_round_trip (r);
    sam2_recipe_free (r);
  }
  assert_parse_error (texts[G_N_ELEMENTS (texts) - 1], "<string>:9:7: skips.patterns[6]: ",
                      "expected a glob pattern");

  /* the same patterns without the mapping item */
  char *text = g_strndup (texts[G_N_ELEMENTS (texts) - 1],
                          strstr (texts[G_N_ELEMENTS (texts) - 1], "    - plain")
                          - texts[G_N_ELEMENTS (texts) - 1]);
  Sam2Recipe *r = parse_ok (text);
  g_assert_cmpuint (g_strv_length (r->skips.patterns), ==, 6);
  g_assert_cmpstr (r->skips.patterns[2], ==,
                   "quote \" backslash \\ tab \t newline \n bell \a");
  g_assert_cmpstr (r->skips.patterns[3], ==,
                   "next line \xc2\x85, line separator \xe2\x80\xa8, bom \xef\xbb\xbf, "
                   "e-acute \xc3\xa9, emoji \xf0\x9f\x98\x80");
  assert_round_trip (r);
  sam2_recipe_free (r);
  g_free (text);

  /* a recipe built in code */
  Sam2Recipe built;
  sam2_recipe_init_defaults (&built);
  built.wgts.group_size = 0;
  built.calib.seed = G_MAXUINT64;
  built.smooth.enabled = TRUE;
  built.smooth.alpha = 1.0 / 3.0;
  built.skips.patterns = g_strsplit ("a.*|*.b|[!c]?", "|", -1);
  assert_round_trip (&built);
  built.skips.patterns[0][0] = '\x01';        /* a control character is escaped */
  assert_round_trip (&built);

  /* a value no recipe file can hold is written so that it fails to read, not as something else */
  built.wgts.dtype = SAM2_QTYPE_SINT8;
  char *yaml = sam2_recipe_to_yaml (&built);
  assert_parse_error (yaml, "<string>:4:12: quant.wgts.dtype: \"4\" is not a weight type", NULL);
  g_free (yaml);
  sam2_recipe_clear (&built);
}

static void
test_equal_and_copy (void)
{
  Sam2Recipe *a = parse_ok ("smooth: {alpha: 0.25}\nskips: {patterns: [\"*.proj\"]}\n");
  Sam2Recipe *b = sam2_recipe_copy (a);
  g_assert_true (sam2_recipe_equal (a, b));
  g_assert_true (a->skips.patterns != b->skips.patterns);
  g_assert_cmpstr (b->skips.patterns[0], ==, "*.proj");

  /* the name says where a recipe came from, not what it does */
  g_free (b->name);
  b->name = g_strdup ("other");
  g_assert_true (sam2_recipe_equal (a, b));

  /* every setting counts while it is used */
  b->smooth.alpha = 0.5;
  g_assert_false (sam2_recipe_equal (a, b));
  b->smooth.search = TRUE;
  a->smooth.search = TRUE;
  g_assert_true (sam2_recipe_equal (a, b));         /* alpha is searched: its number is unused */
  b->smooth.grid = 3;
  g_assert_false (sam2_recipe_equal (a, b));
  a->smooth.enabled = b->smooth.enabled = FALSE;
  g_assert_true (sam2_recipe_equal (a, b));         /* smoothing off: its settings are unused */

  b->wgts.gptq_damp = 0.5;
  g_assert_false (sam2_recipe_equal (a, b));
  a->wgts.gptq = b->wgts.gptq = FALSE;
  g_assert_true (sam2_recipe_equal (a, b));         /* RTN: the GPTQ settings are unused */

  g_strfreev (b->skips.patterns);
  b->skips.patterns = g_new0 (char *, 1);           /* empty, not NULL */
  g_assert_false (sam2_recipe_equal (a, b));
  g_strfreev (a->skips.patterns);
  a->skips.patterns = NULL;
  g_assert_true (sam2_recipe_equal (a, b));

  b->calib.seed = 1;
  g_assert_false (sam2_recipe_equal (a, b));
  b->calib.seed = a->calib.seed;
  b->low_rank.exclusive = !a->low_rank.exclusive;
  g_assert_false (sam2_recipe_equal (a, b));
  b->low_rank.exclusive = a->low_rank.exclusive;
  b->smooth.enabled = TRUE;
  g_assert_false (sam2_recipe_equal (a, b));
  b->smooth.enabled = FALSE;
  g_strfreev (a->skips.patterns);
  g_strfreev (b->skips.patterns);
  a->skips.patterns = g_strsplit ("x|y", "|", -1);
  b->skips.patterns = g_strsplit ("x|z", "|", -1);
  g_assert_false (sam2_recipe_equal (a, b));

  g_assert_true (sam2_recipe_equal (NULL, NULL));
  g_assert_false (sam2_recipe_equal (a, NULL));
  sam2_recipe_free (a);
  sam2_recipe_free (b);
  sam2_recipe_free (NULL);
}

/* ---- forms a key may take --------------------------------------------------------------- */

static void
test_aliases (void)
{
  /* each alias reads as its canonical key */
  static const char *const pairs[][2] = {
    { "group_shapes: [[1, 64]]\n", "quant: {wgts: {group_shapes: [[1, 64]]}}\n" },
    { "group_shapes: [1, -1]\n", "quant: {wgts: {group_shapes: [[1, -1]]}}\n" },
    { "group_size: 256\n", "quant: {wgts: {group_shapes: [[1, 256]]}}\n" },
    { "group_size: -1\n", "quant: {wgts: {group_shapes: [1, -1]}}\n" },
    { "quant: {wgts: {group_size: 64, kernel_gptq: {}}}\n",
      "quant: {wgts: {group_shapes: [1, 64], kernel_gptq: {}}}\n" },
    { "skip_patch_embed: false\n", "skips: {patch_embed: false}\n" },
    { "skip_first_block: true\n", "skips: {first_block: true}\n" },
    { "skip_last_block: true\n", "skips: {last_block: true}\n" },
    { "skip_decoder: false\n", "skips: {decoder: false}\n" },
    { "quant: {smooth: {alpha: 0.75, grid: 5, fold: false}}\n",
      "smooth: {alpha: 0.75, grid: 5, fold: false}\n" },
    { "quant: {smooth: false}\n", "smooth: false\n" },
    { "quant: {wgts: {low_rank: {rank: 16, exclusive: true, compensate: true}}}\n",
      "low_rank: {rank: 16, exclusive: true, compensate: true}\n" },
    { "quant: {wgts: {low_rank: false}}\n", "low_rank: {rank: 0}\n" },
    /* both spellings, agreeing; settings given under either are merged */
    { "group_size: 64\ngroup_shapes: [1, 64]\nquant: {wgts: {group_size: 64}}\n",
      "group_size: 64\n" },
    { "skip_decoder: false\nskips: {decoder: false}\n", "skip_decoder: false\n" },
    { "smooth: {alpha: 0.75}\nquant: {smooth: {alpha: 0.75, grid: 5}}\n",
      "smooth: {alpha: 0.75, grid: 5}\n" },
    { "low_rank: {rank: 8}\nquant: {wgts: {low_rank: {exclusive: true}}}\n",
      "low_rank: {rank: 8, exclusive: true}\n" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (pairs); i++)
    assert_same (pairs[i][0], pairs[i][1]);

  /* both spellings with different values: an error naming both */
  assert_parse_error ("group_size: 64\nquant:\n  wgts:\n    group_shapes: [[1, 128]]\n",
                      "<string>:4:19: quant.wgts.group_shapes: [[1, 128]] differs from "
                      "group_size: 64 at line 1, column 13", NULL);
  assert_parse_error ("quant: {wgts: {group_shapes: [1, -1], group_size: 64}}\n",
                      "<string>:1:51: quant.wgts.group_size: 64 differs from "
                      "quant.wgts.group_shapes: [[1, -1]] at line 1, column 30", NULL);
  assert_parse_error ("skip_decoder: false\nskips:\n  decoder: true\n",
                      "<string>:3:12: skips.decoder: true differs from skip_decoder: false at "
                      "line 1, column 15", "spell the same setting");
  assert_parse_error ("smooth: {alpha: 0.5}\nquant:\n  smooth: {alpha: 0.7}\n",
                      "<string>:3:19: quant.smooth.alpha: 0.7 differs from smooth.alpha: 0.5 at "
                      "line 1, column 17", NULL);
  assert_parse_error ("quant: {smooth: {alpha: 0.5}}\nsmooth: false\n",
                      "<string>:2:9: smooth: false differs from quant.smooth: {...} at line 1, "
                      "column 17", NULL);
  assert_parse_error ("quant: {smooth: false}\nsmooth: {alpha: 0.5}\n",
                      "<string>:2:9: smooth: {...} differs from quant.smooth: false at line 1, "
                      "column 17", NULL);
  assert_parse_error ("low_rank: false\nquant:\n  wgts:\n    low_rank: {rank: 32}\n",
                      "<string>:4:22: quant.wgts.low_rank.rank: 32 differs from low_rank: false "
                      "at line 1, column 11", NULL);
}

static void
test_switches (void)
{
  Sam2Recipe *r;

  /* weight-only: every spelling of null */
  static const char *const weight_only[] = {
    "quant: {ipts: null}\n", "quant: {ipts: ~}\n", "quant:\n  ipts:\n",
    "quant: {ipts: {dtype: null}}\n", "quant: {ipts: {dtype: ~}}\n", "quant: {ipts: {dtype: }}\n",
  };
  for (guint i = 0; i < G_N_ELEMENTS (weight_only); i++) {
    r = parse_ok (weight_only[i]);
    g_assert_cmpint (r->ipts.dtype, ==, SAM2_QTYPE_NONE);
    assert_round_trip (r);
    sam2_recipe_free (r);
  }
  /* the rest of ipts keeps its defaults */
  r = parse_ok ("quant: {ipts: {granularity: per_tensor}}\n");
  g_assert_cmpint (r->ipts.dtype, ==, SAM2_QTYPE_SINT8);
  g_assert_true (r->ipts.per_tensor);
  sam2_recipe_free (r);

  /* GPTQ: off by false or null, on by a mapping; absent keeps the default (on) */
  static const struct {
    const char *text;
    gboolean gptq;
  } gptq[] = {
    { "quant: {wgts: {kernel_gptq: false}}\n", FALSE },
    { "quant: {wgts: {kernel_gptq: null}}\n", FALSE },
    { "quant: {wgts: {kernel_gptq: {}}}\n", TRUE },
    { "quant: {wgts: {kernel_gptq: {act_order: false}}}\n", TRUE },
    { "quant: {wgts: {dtype: uint4}}\n", TRUE },
    { "quant: {wgts: {low_rank: {rank: 8}}}\n", TRUE },
    { "quant: {wgts: {}}\n", TRUE },
    { "quant: {ipts: null}\n", TRUE },
    { "group_size: 64\n", TRUE },
  };
  for (guint i = 0; i < G_N_ELEMENTS (gptq); i++) {
    r = parse_ok (gptq[i].text);
    g_assert_cmpint (r->wgts.gptq, ==, gptq[i].gptq);
    assert_round_trip (r);
    sam2_recipe_free (r);
  }

  /* smoothing and low rank */
  assert_same ("smooth: null\n", "smooth: false\n");
  assert_same ("smooth:\n", "{}\n");
  assert_same ("low_rank: null\n", "low_rank: false\n");
  r = parse_ok ("smooth: {}\n");
  g_assert_true (r->smooth.enabled);
  g_assert_cmpfloat (r->smooth.alpha, ==, 0.5);
  sam2_recipe_free (r);
  r = parse_ok ("smooth: {alpha: search}\n");
  g_assert_true (r->smooth.enabled && r->smooth.search);
  sam2_recipe_free (r);
  r = parse_ok ("smooth: {alpha: \"search\"}\nlow_rank: {rank: 4}\n");
  g_assert_true (r->smooth.search);
  g_assert_cmpint (r->low_rank.rank, ==, 4);
  sam2_recipe_free (r);
  r = parse_ok ("skips: {patterns: null}\n");
  g_assert_null (r->skips.patterns);
  sam2_recipe_free (r);
  r = parse_ok ("skips: {patterns: []}\n");
  g_assert_null (r->skips.patterns);
  sam2_recipe_free (r);
}

static void
test_numbers (void)
{
  static const struct {
    const char *text;
    double damp;
  } damps[] = {
    { "0.01", 0.01 }, { "1e-2", 0.01 }, { "1E-2", 0.01 }, { ".5", 0.5 }, { "+0.5", 0.5 },
    { "5e-1", 0.5 }, { "0.5e0", 0.5 }, { "1.e-3", 0.001 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (damps); i++) {
    char *text = g_strdup_printf ("quant: {wgts: {kernel_gptq: {damp_percentage: %s}}}\n",
                                  damps[i].text);
    Sam2Recipe *r = parse_ok (text);
    g_assert_cmpfloat (r->wgts.gptq_damp, ==, damps[i].damp);
    sam2_recipe_free (r);
    g_free (text);
  }
  /* an integer is a number too */
  Sam2Recipe *r = parse_ok ("smooth: {alpha: 1}\ncalib: {seed: +0, max_tokens: 0}\n");
  g_assert_cmpfloat (r->smooth.alpha, ==, 1.0);
  sam2_recipe_free (r);
  r = parse_ok ("smooth: {alpha: 0}\ncalib: {seed: 18446744073709551615, num_samples: 100000}\n");
  g_assert_cmpfloat (r->smooth.alpha, ==, 0.0);
  g_assert_cmpuint (r->calib.seed, ==, G_MAXUINT64);
  sam2_recipe_free (r);
  /* quoted keys and values are strings; a string is fine where a name is expected */
  r = parse_ok ("\"quant\": {'wgts': {dtype: \"uint4\"}}\n");
  g_assert_cmpint (r->wgts.dtype, ==, SAM2_QTYPE_UINT4);
  sam2_recipe_free (r);
}

/* ---- errors ------------------------------------------------------------------------------- */

typedef struct {
  const char *text;
  const char *prefix;        /* "<source>:<line>:<column>: <key path>: " */
  const char *needle;        /* more of the message, or NULL */
} BadRecipe;

static const BadRecipe bad_recipes[] = {
  /* unknown keys, at every level, with the keys allowed there */
  { "quantt:\n  wgts: {}\n", "<string>:1:1: quantt: unknown key",
    "the keys at the top level are quant, smooth, low_rank, calib, skips, group_shapes" },
  { "quant:\n  wgts:\n    dtpye: sint4\n", "<string>:3:5: quant.wgts.dtpye: unknown key",
    "the keys of quant.wgts are dtype, group_shapes, group_size, kernel_gptq, calib_range, "
    "low_rank" },
  { "quant:\n  wgts:\n    kernel_gptq:\n      damping: 0.1\n",
    "<string>:4:7: quant.wgts.kernel_gptq.damping: unknown key",
    "damp_percentage, block_size, act_order, num_inv_tries" },
  { "alpha: 0.5\n", "<string>:1:1: alpha: unknown key", "alpha is a key of smooth" },
  { "calib: {seed: 1, sed: 2}\n", "<string>:1:18: calib.sed: unknown key", NULL },
  { "\"qu\\0ant\": {}\n", "<string>:1:1: qu\\x00ant: unknown key", NULL },
  /* settings the quantizer would ignore together: refused at the ignored key */
  { "quant:\n  ipts: null\nsmooth:\n  alpha: 0.5\n", "<string>:4:3: smooth: ",
    "quant.ipts is null (weights only)" },
  { "quant: {ipts: {dtype: uint8, post_gelu: symmetric}}\n",
    "<string>:1:41: quant.ipts.post_gelu: ", "need quant.ipts.dtype sint8" },
  /* a plain boolean or number is not a pattern (YAML readers take it as true or 3) */
  { "skips:\n  patterns: [\"a.*\", true]\n", "<string>:2:21: skips.patterns[1]: ",
    "quote it if it is one" },
  { "skips:\n  patterns: [1.5e3]\n", "<string>:2:14: skips.patterns[0]: ", "a glob pattern" },
  /* names */
  { "quant:\n  wgts:\n    dtype: int4\n",
    "<string>:3:12: quant.wgts.dtype: \"int4\" is not a weight type; use sint4 or uint4", NULL },
  { "quant:\n  ipts:\n    dtype: int8\n",
    "<string>:3:12: quant.ipts.dtype: \"int8\" is not an activation type; use sint8, uint8 or null",
    NULL },
  { "quant: {ipts: {dtype: \"null\"}}\n", "<string>:1:23: quant.ipts.dtype: ",
    "remove the quotes" },
  { "quant: {ipts: {granularity: per_channel}}\n", "<string>:1:29: quant.ipts.granularity: ",
    "use per_token or per_tensor" },
  { "quant: {ipts: {post_gelu: [asymmetric]}}\n", "<string>:1:27: quant.ipts.post_gelu: ",
    "expected a post-GELU mode: asymmetric or symmetric, got a list" },
  { "quant: {wgts: {dtype: null}}\n", "<string>:1:23: quant.wgts.dtype: ", "got null" },
  /* wrong types */
  { "calib:\n  num_samples: lots\n",
    "<string>:2:16: calib.num_samples: expected an integer from 1 to 100000, got \"lots\"", NULL },
  { "calib:\n  num_samples: \"128\"\n", "<string>:2:16: calib.num_samples: ",
    "got the string \"128\" (quoted: remove the quotes)" },
  { "calib:\n  batch_size: 2.0\n", "<string>:2:15: calib.batch_size: expected an integer", NULL },
  { "calib: [1, 2]\n", "<string>:1:8: calib: expected a mapping, got a list", NULL },
  { "calib:\n  seed: {a: 1}\n", "<string>:2:9: calib.seed: ", "got a mapping" },
  { "calib:\n  seed: ~\n", "<string>:2:9: calib.seed: ", "got null" },
  { "quant: {wgts: null}\n", "<string>:1:15: quant.wgts: expected a mapping, got null", NULL },
  { "quant: {ipts: false}\n", "<string>:1:15: quant.ipts: ",
    "expected a mapping, or null (weight-only), got \"false\"" },
  { "smooth: true\n", "<string>:1:9: smooth: true is not accepted", "{} for the defaults" },
  { "quant: {wgts: {kernel_gptq: true}}\n", "<string>:1:29: quant.wgts.kernel_gptq: ",
    "true is not accepted" },
  { "low_rank: 32\n", "<string>:1:11: low_rank: ", "expected a mapping, or false or null" },
  { "skips: {patterns: \"*.proj\"}\n", "<string>:1:19: skips.patterns: ",
    "expected a list of glob patterns" },
  { "quant: {wgts: {kernel_gptq: {damp_percentage: .inf}}}\n",
    "<string>:1:47: quant.wgts.kernel_gptq.damp_percentage: ", "got \".inf\"" },
  { "quant: {wgts: {kernel_gptq: {damp_percentage: 0x10}}}\n",
    "<string>:1:47: quant.wgts.kernel_gptq.damp_percentage: ", "expected a number in (0, 1)" },
  { "quant: {wgts: {kernel_gptq: {damp_percentage: 1e}}}\n",
    "<string>:1:47: quant.wgts.kernel_gptq.damp_percentage: ", "got \"1e\"" },
  { "quant: {wgts: {calib_range: {max_shrink: 1}}}\n",
    "<string>:1:42: quant.wgts.calib_range.max_shrink: ", "use a number in [0, 1)" },
  { "quant: {wgts: {calib_range: {objective: outputs_error}}}\n",
    "<string>:1:41: quant.wgts.calib_range.objective: ",
    "use products_error or tensor_error" },
  { "quant: {wgts: {calib_range: true}}\n", "<string>:1:29: quant.wgts.calib_range: ",
    "true is not accepted" },
  /* booleans */
  { "skips: {decoder: yes}\n", "<string>:1:18: skips.decoder: expected true or false, got \"yes\"",
    "only true and false are booleans" },
  { "skips:\n  decoder: True\n", "<string>:2:12: skips.decoder: ", "only true and false" },
  { "skip_decoder: 1\n", "<string>:1:15: skip_decoder: expected true or false", NULL },
  { "quant: {wgts: {kernel_gptq: {act_order: \"true\"}}}\n",
    "<string>:1:41: quant.wgts.kernel_gptq.act_order: ", "remove the quotes" },
  /* ranges */
  { "calib:\n  batch_size: 33\n",
    "<string>:2:15: calib.batch_size: 33 is out of range; use an integer from 1 to 32", NULL },
  { "calib: {batch_size: 0}\n", "<string>:1:21: calib.batch_size: 0 is out of range", NULL },
  { "calib: {num_samples: 0}\n", "<string>:1:22: calib.num_samples: 0 is out of range", NULL },
  { "calib: {num_samples: 100001}\n", "<string>:1:22: calib.num_samples: 100001 is out", NULL },
  { "calib: {max_tokens: -1}\n", "<string>:1:21: calib.max_tokens: -1 is out of range", NULL },
  { "calib: {max_tokens: 99999999999999999999999}\n", "<string>:1:21: calib.max_tokens: ",
    "is out of range" },
  { "calib: {keep_tokens: 65537}\n", "<string>:1:22: calib.keep_tokens: 65537 is out", NULL },
  { "calib: {keep_tokens: 0}\n", "<string>:1:22: calib.keep_tokens: 0 is out", NULL },
  { "calib: {seed: -1}\n", "<string>:1:15: calib.seed: -1 is out of range", NULL },
  { "calib: {seed: 18446744073709551616}\n", "<string>:1:15: calib.seed: ", "out of range" },
  { "calib: {seed: 010}\n", "<string>:1:15: calib.seed: ", "leading zeros" },
  { "quant:\n  wgts:\n    kernel_gptq:\n      damp_percentage: 0\n",
    "<string>:4:24: quant.wgts.kernel_gptq.damp_percentage: 0 is out of range; use a number in "
    "(0, 1)", NULL },
  { "quant: {wgts: {kernel_gptq: {damp_percentage: 1.0}}}\n",
    "<string>:1:47: quant.wgts.kernel_gptq.damp_percentage: 1.0 is out of range", NULL },
  { "quant: {wgts: {kernel_gptq: {block_size: 0}}}\n",
    "<string>:1:42: quant.wgts.kernel_gptq.block_size: 0 is out of range", "1 to 4096" },
  { "quant: {wgts: {kernel_gptq: {block_size: 4097}}}\n",
    "<string>:1:42: quant.wgts.kernel_gptq.block_size: 4097 is out of range", NULL },
  { "quant: {wgts: {kernel_gptq: {num_inv_tries: 101}}}\n",
    "<string>:1:45: quant.wgts.kernel_gptq.num_inv_tries: 101 is out of range", "1 to 100" },
  { "smooth: {alpha: 1.5}\n",
    "<string>:1:17: smooth.alpha: 1.5 is out of range; use a number in [0, 1] or search", NULL },
  { "smooth: {alpha: -0.1}\n", "<string>:1:17: smooth.alpha: -0.1 is out of range", NULL },
  { "smooth: {alpha: 1e999}\n", "<string>:1:17: smooth.alpha: 1e999 is out of range", NULL },
  { "smooth: {alpha: serach}\n", "<string>:1:17: smooth.alpha: ",
    "expected a number in [0, 1] or search, got \"serach\"" },
  { "smooth: {grid: 1}\n", "<string>:1:16: smooth.grid: 1 is out of range", "2 to 1000" },
  { "smooth: {grid: 1001}\n", "<string>:1:16: smooth.grid: 1001 is out of range", NULL },
  { "low_rank: {rank: 1025}\n", "<string>:1:18: low_rank.rank: 1025 is out of range",
    "0 to 1024" },
  { "low_rank: {rank: -1}\n", "<string>:1:18: low_rank.rank: -1 is out of range", NULL },
  /* group sizes */
  { "group_size: 100\n", "<string>:1:13: group_size: 100 is not a group size",
    "-1 (one group per output channel) or a multiple of 8 from 8 to 4096" },
  { "group_size: 0\n", "<string>:1:13: group_size: 0 is not a group size", NULL },
  { "group_size: x\n", "<string>:1:13: group_size: expected -1 (one group per output channel)",
    NULL },
  { "quant: {wgts: {group_size: 8192}}\n",
    "<string>:1:28: quant.wgts.group_size: 8192 is not a group size", NULL },
  { "quant: {wgts: {group_size: -8}}\n", "<string>:1:28: quant.wgts.group_size: -8 is not", NULL },
  { "quant: {wgts: {group_shapes: [[2, 128]]}}\n",
    "<string>:1:32: quant.wgts.group_shapes[0][0]: groups span one row", NULL },
  { "quant: {wgts: {group_shapes: [[1, 100]]}}\n",
    "<string>:1:35: quant.wgts.group_shapes[0][1]: 100 is not a group size", NULL },
  { "quant: {wgts: {group_shapes: [1, 12]}}\n",
    "<string>:1:34: quant.wgts.group_shapes[1]: 12 is not a group size", NULL },
  { "quant: {wgts: {group_shapes: [[1, 128], [1, 64]]}}\n",
    "<string>:1:30: quant.wgts.group_shapes: 2 group shapes; a recipe takes one", NULL },
  { "quant: {wgts: {group_shapes: [1, 2, 3]}}\n",
    "<string>:1:30: quant.wgts.group_shapes: a group shape is [1, G], got 3 entries", NULL },
  { "group_shapes: [[1]]\n", "<string>:1:16: group_shapes[0]: a group shape is [1, G]", NULL },
  { "group_shapes: 128\n", "<string>:1:15: group_shapes: expected [[1, G]] or [1, G]", NULL },
  { "group_shapes: [[1, x]]\n", "<string>:1:20: group_shapes[0][1]: expected [[1, G]]", NULL },
  /* patterns */
  { "skips: {patterns: [\"\"]}\n", "<string>:1:20: skips.patterns[0]: an empty pattern", NULL },
  { "skips: {patterns: [\"a\", ~]}\n", "<string>:1:25: skips.patterns[1]: expected a glob pattern",
    NULL },
  { "skips: {patterns: [\"a\\0b\"]}\n", "<string>:1:20: skips.patterns[0]: ", "NUL" },
  { "skips:\n  patterns: [*.attn.proj]\n", "<string>:2:15: invalid YAML: ",
    "a glob pattern starting with * must be quoted" },
  /* duplicate keys */
  { "calib:\n  seed: 1\n  seed: 2\n",
    "<string>:3:3: calib.seed: duplicate key; it was given at line 2, column 3", NULL },
  { "calib: {}\nsmooth: {}\ncalib: {}\n", "<string>:3:1: calib: duplicate key", "line 1" },
  { "quant: {wgts: {dtype: sint4, 'dtype': sint4}}\n",
    "<string>:1:30: quant.wgts.dtype: duplicate key", NULL },
  /* malformed YAML, with libyaml's own position */
  { "quant:\n  wgts: [1, 2\n", "<string>:3:1: invalid YAML: did not find expected ',' or ']'",
    "line 2, column 9" },
  { "quant:\n\twgts: {}\n", "<string>:2:1: invalid YAML: ", NULL },
  { "calib: seed: 1\n", "<string>:1:12: invalid YAML: mapping values are not allowed", NULL },
  { "calib: {seed: 1\n", "<string>:2:1: invalid YAML: ", NULL },
  { "calib:\n  seed: \"1\n", "<string>:3:1: invalid YAML: ", "quoted scalar" },
  { "calib:\n  seed: \xff\n", "<string>:2:9: invalid YAML: invalid leading UTF-8 octet", NULL },
  { "calib:\n  seed: 1\n x: 2\n", "<string>:3:2: invalid YAML: ", NULL },
  /* what a recipe is not */
  { "- a\n- b\n", "<string>:1:1: a recipe is a mapping of the keys quant, smooth", "got a list" },
  { "hello\n", "<string>:1:1: a recipe is a mapping", "got \"hello\"" },
  { "calib: {}\n---\ncalib: {}\n", "<string>:2:1: a second YAML document", NULL },
  { "calib: {}\n...\n--- {}\n", "<string>:3:1: a second YAML document", NULL },
  { "calib: &c {seed: 1}\n", "<string>:1:8: YAML anchors (&c)", "not supported" },
  { "calib: {seed: 1}\nsmooth: *c\n", "<string>:2:9: YAML aliases (*c)", "not supported" },
  { "calib:\n  seed: !!int 5\n", "<string>:2:9: YAML tags (tag:yaml.org,2002:int)", NULL },
  { "? [a]\n: 1\n", "<string>:1:3: a key must be a name, not a list", NULL },
  { "calib: {{a: 1}: 2}\n", "<string>:1:9: calib: a key must be a name, not a mapping", NULL },
  /* columns count characters, not bytes */
  { "skips: {patterns: [\"\xc3\xa9\"], decoder: yes}\n", "<string>:1:35: skips.decoder: ", NULL },
};

static void
test_errors (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (bad_recipes); i++)
    assert_parse_error (bad_recipes[i].text, bad_recipes[i].prefix, bad_recipes[i].needle);
  g_test_message ("%u bad recipes refused", (guint) G_N_ELEMENTS (bad_recipes));
}

static void
test_nesting (void)
{
  /* deep flow and block nesting stop at the limit, with the position where it was crossed */
  GString *flow = g_string_new ("skips: {patterns: ");
  for (int i = 0; i < 100000; i++)
    g_string_append_c (flow, '[');
  assert_parse_error (flow->str, "<string>:1:33: nested more than 16 levels deep", NULL);
  g_string_free (flow, TRUE);

  GString *block = g_string_new ("calib:\n");
  for (int i = 1; i <= 20; i++)
    g_string_append_printf (block, "%*sk%d:\n", 2 * i, "", i);
  assert_parse_error (block->str, "<string>:17:33: nested more than 16 levels deep", NULL);
  g_string_free (block, TRUE);

  /* exactly at the limit, the error is the ordinary one */
  GString *ok = g_string_new ("skips: {patterns: ");
  for (int i = 0; i < 14; i++)
    g_string_append_c (ok, '[');
  for (int i = 0; i < 14; i++)
    g_string_append_c (ok, ']');
  g_string_append (ok, "}\n");
  assert_parse_error (ok->str, "<string>:1:20: skips.patterns[0]: expected a glob pattern", NULL);
  g_string_free (ok, TRUE);

  /* over 1 MiB is refused before reading */
  char *big = g_strnfill ((1 << 20) + 1, ' ');
  GError *error = NULL;
  g_assert_null (sam2_recipe_parse (big, -1, "big.yaml", &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG);
  g_assert_true (g_str_has_prefix (error->message, "big.yaml: "));
  g_clear_error (&error);
  g_free (big);
}

static void
test_unknown_key_lists_allowed (void)
{
  static const struct {
    const char *text;
    const char *allowed;
  } cases[] = {
    { "x: 1\n", "quant, smooth, low_rank, calib, skips, group_shapes, group_size, "
                "skip_patch_embed, skip_first_block, skip_last_block, skip_decoder" },
    { "quant: {x: 1}\n", "the keys of quant are wgts, ipts, smooth" },
    { "quant: {wgts: {x: 1}}\n", "dtype, group_shapes, group_size, kernel_gptq, calib_range, low_rank" },
    { "quant: {wgts: {kernel_gptq: {x: 1}}}\n", "damp_percentage, block_size, act_order, "
                                                 "num_inv_tries" },
    { "quant: {ipts: {x: 1}}\n", "dtype, granularity, post_gelu" },
    { "smooth: {x: 1}\n", "alpha, grid, fold" },
    { "quant: {smooth: {x: 1}}\n", "the keys of quant.smooth are alpha, grid, fold" },
    { "low_rank: {x: 1}\n", "rank, exclusive, compensate" },
    { "quant: {wgts: {low_rank: {x: 1}}}\n", "the keys of quant.wgts.low_rank are rank, "
                                             "exclusive, compensate" },
    { "calib: {x: 1}\n", "num_samples, batch_size, max_tokens, keep_tokens, seed" },
    { "skips: {x: 1}\n", "patch_embed, first_block, last_block, decoder, patterns" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    assert_parse_error (cases[i].text, "<string>:1:", cases[i].allowed);
  /* a key put at the wrong level says where it belongs */
  assert_parse_error ("quant: {dtype: sint4}\n", "<string>:1:9: quant.dtype: unknown key",
                      "dtype is a key of quant.wgts, quant.ipts");
  assert_parse_error ("quant: {calib: {}}\n", "<string>:1:9: quant.calib: unknown key",
                      "calib is a key of the top level");
}

/* ---- files and patterns -------------------------------------------------------------------- */

static void
test_load (void)
{
  GError *error = NULL;
  g_assert_null (sam2_recipe_load ("/nonexistent/recipe.yaml", &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_IO);
  g_assert_nonnull (strstr (error->message, "/nonexistent/recipe.yaml"));
  g_clear_error (&error);

  char *dir = g_dir_make_tmp ("sam2-recipe-XXXXXX", &error);
  g_assert_no_error (error);
  g_assert_null (sam2_recipe_load (dir, &error));       /* a directory */
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_IO);
  g_clear_error (&error);

  /* the name is the file name without directory and extension; errors name the path */
  char *path = g_build_filename (dir, "my.recipe.yaml", NULL);
  g_assert_true (g_file_set_contents (path, "calib: {seed: 3}\n", -1, &error));
  Sam2Recipe *r = sam2_recipe_load (path, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (r->name, ==, "my.recipe");
  g_assert_cmpuint (r->calib.seed, ==, 3);
  char *yaml = sam2_recipe_to_yaml (r);
  g_assert_true (g_str_has_prefix (yaml, "# sam2 quantization recipe \"my.recipe\""));
  g_free (yaml);
  sam2_recipe_free (r);

  g_assert_true (g_file_set_contents (path, "calib:\n  seed: x\n", -1, &error));
  g_assert_null (sam2_recipe_load (path, &error));
  g_assert_error (error, SAM2_ERROR, SAM2_ERROR_CONFIG);
  char *prefix = g_strdup_printf ("%s:2:9: calib.seed: ", path);
  g_assert_true (g_str_has_prefix (error->message, prefix));
  g_clear_error (&error);
  g_free (prefix);

  char *bare = g_build_filename (dir, "noext", NULL);
  g_assert_true (g_file_set_contents (bare, "", -1, &error));
  r = sam2_recipe_load (bare, &error);
  g_assert_cmpstr (r->name, ==, "noext");
  sam2_recipe_free (r);

  g_unlink (bare);
  g_unlink (path);
  g_rmdir (dir);
  g_free (bare);
  g_free (path);
  g_free (dir);
}

/* <model>-<recipe>.safetensors, as sam2q quantize and sam2calib name their output. */
static void
test_quantized_file_name (void)
{
  GError *error = NULL;
  Sam2Recipe *named = sam2_recipe_parse ("calib: {seed: 7}\n", -1, "configs/w4a8_fast.yaml",
                                         &error);
  g_assert_no_error (error);
  Sam2Recipe defaults;
  sam2_recipe_init_defaults (&defaults);
  const struct {
    const char *model;
    const Sam2Recipe *recipe;
    const char *want;
  } cases[] = {
    { "facebook/sam2.1-hiera-tiny", named, "sam2.1-hiera-tiny-w4a8_fast.safetensors" },
    { "TINY", named, "sam2.1-hiera-tiny-w4a8_fast.safetensors" },
    { "base", &defaults, "sam2.1-hiera-base-plus-default.safetensors" },
    { "facebook/sam2.1-hiera-small@main", NULL, "sam2.1-hiera-small-default.safetensors" },
    { "/models/my-sam2/", named, "my-sam2-w4a8_fast.safetensors" },
    /* "." was ".-w4a8_fast.safetensors": hidden */
    { "/models/my-sam2/.", named, "my-sam2-w4a8_fast.safetensors" },
    { "/models/my-sam2/sub/..", named, "my-sam2-w4a8_fast.safetensors" },
    /* the revision before the shortcut: "tiny@main" gave "tiny-..." */
    { "tiny@main", named, "sam2.1-hiera-tiny-w4a8_fast.safetensors" },
    /* a checkpoint named by its files: "model.safetensors-w4a8_fast.safetensors" */
    { "/models/my-sam2/model.safetensors", named, "my-sam2-w4a8_fast.safetensors" },
    { "/models/my-sam2/config.json", NULL, "my-sam2-default.safetensors" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    char *file = sam2_quantized_file_name (cases[i].model, cases[i].recipe);
    g_assert_cmpstr (file, ==, cases[i].want);
    g_free (file);
  }
  sam2_recipe_clear (&defaults);
  sam2_recipe_free (named);
}

static void
test_pattern_skips (void)
{
  Sam2Recipe *r = parse_ok ("skips:\n  patterns: [\"vision_encoder.backbone.blocks.*.attn.proj\",\n"
                            "             \"*.mlp.proj_out\", \"mask_decoder.?\"]\n");
  g_assert_true (sam2_recipe_pattern_skips (r, "vision_encoder.backbone.blocks.3.attn.proj"));
  g_assert_true (sam2_recipe_pattern_skips (r, "vision_encoder.backbone.blocks.12.attn.proj"));
  g_assert_false (sam2_recipe_pattern_skips (r, "vision_encoder.backbone.blocks.3.attn.qkv"));
  g_assert_true (sam2_recipe_pattern_skips (r, "vision_encoder.backbone.blocks.0.mlp.proj_out"));
  g_assert_true (sam2_recipe_pattern_skips (r, "mask_decoder.x"));
  g_assert_false (sam2_recipe_pattern_skips (r, "mask_decoder.xy"));
  sam2_recipe_free (r);

  r = parse_ok ("");
  g_assert_false (sam2_recipe_pattern_skips (r, "vision_encoder.backbone.blocks.0.attn.proj"));
  sam2_recipe_free (r);
}

/* The name in sam2_recipe_to_yaml's first line comes back whole, also when it holds the line's
 * own ending (it was cut at the first "\", every key resolved"). */
static void
test_yaml_name (void)
{
  const char *names[] = { "hiera_tiny_w4a8", "x\", every key resolved", "a\\b \"q\"" };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
    Sam2Recipe *r = parse_ok ("");
    g_free (r->name);
    r->name = g_strdup (names[i]);
    char *yaml = sam2_recipe_to_yaml (r);
    char *got = sam2_recipe_yaml_name (yaml), *want = g_strescape (names[i], NULL);
    g_assert_cmpstr (got, ==, want);
    g_free (got);
    g_free (want);
    g_free (yaml);
    sam2_recipe_free (r);
  }
  g_assert_null (sam2_recipe_yaml_name ("# sam2 quantization recipe \"x\", every key resolved "
                                        "and more\n"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/recipe/defaults", test_defaults);
  g_test_add_func ("/recipe/configs", test_configs);
  g_test_add_func ("/recipe/round-trip", test_round_trip);
  g_test_add_func ("/recipe/equal-and-copy", test_equal_and_copy);
  g_test_add_func ("/recipe/aliases", test_aliases);
  g_test_add_func ("/recipe/switches", test_switches);
  g_test_add_func ("/recipe/numbers", test_numbers);
  g_test_add_func ("/recipe/errors", test_errors);
  g_test_add_func ("/recipe/nesting", test_nesting);
  g_test_add_func ("/recipe/unknown-key-lists-allowed", test_unknown_key_lists_allowed);
  g_test_add_func ("/recipe/load", test_load);
  g_test_add_func ("/recipe/pattern-skips", test_pattern_skips);
  g_test_add_func ("/recipe/quantized-file-name", test_quantized_file_name);
  g_test_add_func ("/recipe/yaml-name", test_yaml_name);
  return g_test_run ();
}
