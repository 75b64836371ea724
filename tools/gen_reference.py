#!/usr/bin/env python3
"""Generate small extra float64 reference outputs from HF transformers ``Sam2Model``.

Purpose
-------
The shipped fixtures (``../shared/fixtures``, made by ``generators/fixtures.py``) cover one small
config (``sam2-mini-hash``) and the real tiny architecture. This script builds a few *more* SAM2
configs. Each one exercises code paths those fixtures leave out (window padding at stage
transitions, global attention with query pooling, a stage change without pooling, non-square
positional-embedding background, a deeper mask decoder with 4 multimask outputs, an FPN with 3x3
kernels and top-down into level 1, a tanh-GELU backbone, and so on). The script writes reference
outputs the C implementation must reproduce.

Everything is regenerated from pure functions, so no weights or inputs need to be committed:

* weights: the fixtures' "hash weights" (``hash_tensor`` below, copied verbatim from
  ``fixtures.py``; keyed by ``Sam2Model`` state-dict name; stored as fp32, run in float64);
* input: the fixtures' "hash pixels" ``hash_pixels((1, 3, S, S))`` (name ``"pixel_values"``,
  value ``2 v``);
* prompts: the five cases of ``fixtures.py::prompt_cases(S)`` (coordinates scaled by S/256).

Like ``fixtures.py``, the model goes through ``save_pretrained`` (fp32 hash weights) and then
``from_pretrained(...).double()``, and runs in float64 on the CPU.

Usage
-----
    /work/venv-ref/bin/python tools/gen_reference.py OUTDIR [--only NAME[,NAME...]] [--no-selftest]

Outputs
-------
``OUTDIR/<name>/config.json``
    The config exactly as ``Sam2Model.save_pretrained`` writes it (``Sam2Config.to_json_file``).
    Build the model from it and fill every floating-point state-dict tensor with the hash weights.
``OUTDIR/<name>/reference.safetensors``
    Only tensors under ``hashpix/``, all float32 (the naming of the fixtures README):

    * ``hashpix/in/<case>/input_points`` ``(1, objects, points, 2)``,
      ``hashpix/in/<case>/input_labels`` ``(1, objects, points)`` (labels stored as float),
      ``hashpix/in/<case>/input_boxes`` ``(1, boxes, 4)``: present where the case uses them;
    * ``hashpix/out/<case>/iou_scores`` ``(1, objects, M)``,
      ``hashpix/out/<case>/pred_masks`` ``(1, objects, M, 4E, 4E)`` (low-res mask logits, E = S/16),
      ``hashpix/out/<case>/object_score_logits`` ``(1, objects, 1)``;
      M = num_multimask_outputs (3, or 4 for ``deep-decoder``) when multimask_output is true, else 1;
    * ``hashpix/out/image_embeddings/{0,1,2}``: ``Sam2Model.forward(...).image_embeddings`` for case
      ``p1`` (after ``conv_s0``, after ``conv_s1``, and the image embedding).

    Cases: ``p1``, ``p2neg``, ``box``, ``boxpt``, ``twoobj`` (see the fixtures README).
``OUTDIR/manifest.json``
    One entry per config: name, image size, what it exercises, file sizes, sha256 of the files,
    tensor shapes, and the margins of the data-dependent choices in single-mask cases (the
    dynamic-multimask stability score against its threshold, and the top-2 IoU gap). A small
    margin means a float32 implementation could legitimately pick another mask. It also lists
    configs transformers rejected, and the checks below.

Checks done by the script
-------------------------
* Self-test (skip with ``--no-selftest``): with ``../shared/fixtures/sam2-mini-hash`` present, the
  hash function must reproduce its ``model.safetensors`` bit for bit. This pipeline, run on
  ``mini_config()``, must also reproduce its ``hashpix/`` references (those came from a GPU, so
  the check uses a 1e-5 relative tolerance).
* Determinism: each config is built and run twice from scratch in float64. The two runs must be
  bitwise identical.
* Every output must be finite, and ``config.json`` must rebuild the same state dict (names, shapes).
"""
import argparse
import copy
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import (Sam2Config, Sam2HieraDetConfig, Sam2MaskDecoderConfig, Sam2Model,
                          Sam2PromptEncoderConfig, Sam2VisionConfig)

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "fixtures"))
SIZE_TARGET = 400 * 1024

# ---------------------------------------------------------------------------------------------
# Hash weights / pixels: copied verbatim from shared/fixtures/generators/fixtures.py.
# ---------------------------------------------------------------------------------------------
M64 = (1 << 64) - 1


def fnv1a64(s):
    h = 0xcbf29ce484222325
    for b in s.encode():
        h ^= b
        h = (h * 0x100000001b3) & M64
    return h


def hash_uniform(name, n):
    """v in [-1,1): z = splitmix64 finalizer of (fnv1a64(name) + (i+1)*golden)."""
    with np.errstate(over="ignore"):
        i = np.arange(n, dtype=np.uint64)
        z = np.uint64(fnv1a64(name)) + (i + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)
    return 2.0 * u - 1.0


def hash_tensor(name, shape):
    n = int(np.prod(shape)) if len(shape) else 1
    v = hash_uniform(name, n)
    if len(shape) >= 2:
        v = v / math.sqrt(n / shape[0])
    elif len(shape) == 1:
        v = 1.0 + 0.1 * v if name.endswith("weight") else 0.02 * v
    else:
        v = np.ones(1)
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def hash_pixels(shape):
    n = int(np.prod(shape))
    return torch.from_numpy((2.0 * hash_uniform("pixel_values", n)).astype(np.float32).reshape(shape))


def apply_hash_weights(model):
    sd = model.state_dict()
    new = {}
    for k, t in sd.items():
        if t.is_floating_point():
            new[k] = hash_tensor(k, tuple(t.shape))
    model.load_state_dict(new, strict=False)
    return sorted(new.keys())


def prompt_cases(S):
    f = S / 256.0
    P = lambda pts: torch.tensor(pts, dtype=torch.float64) * f  # noqa: E731
    return {
        "p1": dict(input_points=P([[[[128.0, 96.0]]]]), input_labels=torch.tensor([[[1]]]), multimask_output=True),
        "p2neg": dict(input_points=P([[[[100.0, 80.0], [180.0, 200.0]]]]), input_labels=torch.tensor([[[1, 0]]]), multimask_output=False),
        "box": dict(input_boxes=P([[[40.0, 50.0, 200.0, 220.0]]]), multimask_output=True),
        "boxpt": dict(input_boxes=P([[[40.0, 50.0, 200.0, 220.0]]]), input_points=P([[[[120.0, 140.0]]]]), input_labels=torch.tensor([[[1]]]), multimask_output=False),
        "twoobj": dict(input_points=P([[[[60.0, 60.0]], [[200.0, 180.0]]]]), input_labels=torch.tensor([[[1], [1]]]), multimask_output=True),
    }


# ---------------------------------------------------------------------------------------------
# Configurations
# ---------------------------------------------------------------------------------------------
def _cfg(S, bb, fpn, fpn_kw=None, dec=None, pe=None):
    """Assemble a Sam2Config for an SxS input; feature sizes follow from S (strides 4, 8, 16)."""
    bbc = Sam2HieraDetConfig(image_size=[S, S], **bb)
    vc = Sam2VisionConfig(backbone_config=bbc, backbone_channel_list=list(bb["embed_dim_per_stage"])[::-1],
                          backbone_feature_sizes=[[S // 4, S // 4], [S // 8, S // 8], [S // 16, S // 16]],
                          fpn_hidden_size=fpn, **(fpn_kw or {}))
    pc = Sam2PromptEncoderConfig(hidden_size=fpn, image_size=S, patch_size=16, **(pe or {}))
    mc = Sam2MaskDecoderConfig(hidden_size=fpn, **(dec or {}))
    return Sam2Config(vision_config=vc, prompt_encoder_config=pc, mask_decoder_config=mc)


def cfg_holdout():
    # Exactly fixtures.py::holdout().
    bb = Sam2HieraDetConfig(hidden_size=24, num_attention_heads=2, image_size=[320, 320],
                            blocks_per_stage=[2, 1, 4, 2], embed_dim_per_stage=[24, 48, 96, 192],
                            num_attention_heads_per_stage=[2, 2, 4, 4], window_size_per_stage=[8, 4, 6, 4],
                            global_attention_blocks=[5], window_positional_embedding_background_size=[5, 5])
    vc = Sam2VisionConfig(backbone_config=bb, backbone_channel_list=[192, 96, 48, 24],
                          backbone_feature_sizes=[[80, 80], [40, 40], [20, 20]], fpn_hidden_size=32)
    pc = Sam2PromptEncoderConfig(hidden_size=32, image_size=320, patch_size=16)
    mc = Sam2MaskDecoderConfig(hidden_size=32, mlp_dim=96, num_attention_heads=4, iou_head_hidden_dim=48)
    return Sam2Config(vision_config=vc, prompt_encoder_config=pc, mask_decoder_config=mc)


def cfg_windows_pad():
    # 192x192: token grids 48 / 24 / 12 / 6.  Blocks: s0 [0], s1 [1,2], s2 [3,4,5], s3 [6,7,8].
    # (A global block at the first block of a pooled stage, e.g. global_attention_blocks=[6], is
    # rejected by transformers: ZeroDivisionError in Sam2MultiScaleBlock.forward, window_size 0 // 2.)
    return _cfg(192, dict(
        hidden_size=16, num_attention_heads=1, blocks_per_stage=[1, 2, 3, 3],
        embed_dim_per_stage=[16, 32, 64, 128], num_attention_heads_per_stage=[1, 2, 2, 4],
        window_size_per_stage=[8, 10, 8, 5], global_attention_blocks=[7],
        window_positional_embedding_background_size=[7, 7]), fpn=32,
        dec=dict(mlp_dim=64, num_attention_heads=4, iou_head_hidden_dim=32))


def cfg_two_pool_stages():
    # 160x160: grids 40 / 20 / 10 / 10 (no pooling into stage 3). Blocks: s0 [0], s1 [1], s2 [2,3], s3 [4,5].
    return _cfg(160, dict(
        hidden_size=16, num_attention_heads=1, blocks_per_stage=[1, 1, 2, 2],
        embed_dim_per_stage=[16, 24, 48, 64], num_attention_heads_per_stage=[1, 2, 3, 4],
        window_size_per_stage=[8, 4, 6, 4], global_attention_blocks=[5], num_query_pool_stages=2,
        mlp_ratio=2.0, window_positional_embedding_background_size=[6, 4]), fpn=32,
        # stage 3 has the same resolution as stage 2, so the default top-down 3->2 (a 2x nearest
        # upsample) cannot be added; top-down only into level 1.
        fpn_kw=dict(fpn_top_down_levels=[1]),
        dec=dict(mlp_dim=64, num_attention_heads=4, iou_head_hidden_dim=32))


def cfg_deep_decoder():
    # 128x128: grids 32 / 16 / 8 / 4.  Blocks: s0 [0], s1 [1], s2 [2,3], s3 [4].
    return _cfg(128, dict(
        hidden_size=16, num_attention_heads=1, blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[16, 32, 64, 128], num_attention_heads_per_stage=[1, 1, 2, 4],
        window_size_per_stage=[8, 4, 4, 2], global_attention_blocks=[3],
        window_positional_embedding_background_size=[7, 7]), fpn=48,
        fpn_kw=dict(fpn_top_down_levels=[1, 2, 3], fpn_kernel_size=3, fpn_padding=1),
        dec=dict(mlp_dim=64, num_hidden_layers=3, num_attention_heads=4, attention_downsample_rate=4,
                 num_multimask_outputs=4, iou_head_depth=4, iou_head_hidden_dim=40,
                 dynamic_multimask_via_stability=False))


def cfg_gelu_tanh():
    # 128x128: grids 32 / 16 / 8 / 4.  Blocks: s0 [0,1], s1 [2], s2 [3,4], s3 [5].
    return _cfg(128, dict(
        hidden_size=16, num_attention_heads=1, blocks_per_stage=[2, 1, 2, 1],
        embed_dim_per_stage=[16, 32, 64, 96], num_attention_heads_per_stage=[2, 2, 2, 2],
        window_size_per_stage=[8, 4, 4, 4], global_attention_blocks=[1],
        patch_kernel_size=[5, 5], patch_padding=[2, 2],
        hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-5,
        window_positional_embedding_background_size=[4, 4]), fpn=32,
        fpn_kw=dict(fpn_top_down_levels=[0, 1, 2, 3], hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-5),
        pe=dict(hidden_act="relu", layer_norm_eps=1e-5),
        dec=dict(mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32))


def cfg_mini():
    # fixtures.py::mini_config(), used only by the self-test.
    bb = Sam2HieraDetConfig(hidden_size=16, num_attention_heads=1, image_size=[256, 256],
                            blocks_per_stage=[1, 2, 3, 1], embed_dim_per_stage=[16, 32, 64, 128],
                            num_attention_heads_per_stage=[1, 2, 4, 8], window_size_per_stage=[4, 4, 6, 4],
                            global_attention_blocks=[4], window_positional_embedding_background_size=[7, 7])
    vc = Sam2VisionConfig(backbone_config=bb, backbone_channel_list=[128, 64, 32, 16],
                          backbone_feature_sizes=[[64, 64], [32, 32], [16, 16]], fpn_hidden_size=64)
    pc = Sam2PromptEncoderConfig(hidden_size=64, image_size=256, patch_size=16)
    mc = Sam2MaskDecoderConfig(hidden_size=64, mlp_dim=128, num_attention_heads=8, iou_head_hidden_dim=64)
    return Sam2Config(vision_config=vc, prompt_encoder_config=pc, mask_decoder_config=mc)


CONFIGS = [
    ("holdout", cfg_holdout, [
        "exactly fixtures.py holdout(): 320x320, blocks [2,1,4,2], dims [24,48,96,192], heads [2,2,4,4]",
        "two blocks in stage 0; stage 1 has a single (pooling) block",
        "windows [8,4,6,4] on grids 80/40/20/10: window 6 pads 20->24, pooled stage-3 entry window 6->3 pads 10->12",
        "global attention at block 5 (middle of stage 2); bkg pos-embed 5x5 bicubic-upsampled to 80x80",
        "FPN/decoder width 32, decoder mlp 96, 4 heads (head_dim 8 self, 4 cross), IoU head hidden 48",
    ]),
    ("windows-pad", cfg_windows_pad, [
        "192x192, blocks [1,2,3,3] (grids 48/24/12/6), windows [8,10,8,5], heads [1,2,2,4], 3 query-pool stages",
        "window padding in every stage after 0: w10 on 24 (->30), w8 on 12 (->16), w5 on 6 (->10)",
        "stage-2 entry (block 3): windowed q-pool with the lagged window 10 on 24 (padded to 30 before pooling), "
        "pooled to the odd window 5 on 12 (unpartitioned with padding 15)",
        "stage-3 entry (block 6): lagged window 8 on 12 (padded to 16), pooled to window 4 on 6 (padded to 8)",
        "global attention at block 7 (middle of the last stage, between two padded windowed blocks)",
        "FPN/decoder width 32, decoder 4 heads, mlp 64, IoU hidden 32",
    ]),
    ("two-pool-stages", cfg_two_pool_stages, [
        "160x160, num_query_pool_stages=2 with 4 stages: grids 40/20/10/10",
        "stage-2 entry (block 2): lagged window 4 pooled to 2 on 10; stage 2 window 6 on 10 (padded to 12)",
        "stage-3 entry (block 4): dim change 48->64 through proj WITHOUT pooling, lagged window 6 on 10 (padded to 12)",
        "heads [1,2,3,4] per stage (head_dim 16,12,16,16); mlp_ratio 2.0 (hidden = 2x dim)",
        "NOTE: stage 3 (blocks 4-5) cannot influence any Sam2Model output: level 3 only reaches the outputs "
        "through top-down into level 2, which needs a 2x resolution step; the C code must still build and may skip it",
        "non-square pos-embed background [6,4] bicubic-resized to 40x40",
        "global attention at block 5 (last block, no pooling); FPN top-down only into level 1 "
        "(fpn_top_down_levels [1]: level 3 has level 2's resolution so the default [2,3] cannot run)",
    ]),
    ("deep-decoder", cfg_deep_decoder, [
        "128x128 (grids 32/16/8/4, image embedding 8x8), FPN/decoder width 48",
        "mask decoder num_hidden_layers=3: three two-way blocks, each with a 3-layer ReLU MLP (proj_in, 1 hidden layer, proj_out)",
        "num_multimask_outputs=4: 5 mask tokens / hypernetwork MLPs, IoU head outputs 5, multimask cases return 4 masks",
        "iou_head_depth 4 (2 hidden layers), iou_head_hidden_dim 40; attention_downsample_rate 4 (cross-attn internal dim 12, head_dim 3)",
        "dynamic_multimask_via_stability false: single-mask cases return mask token 0 as is",
        "FPN: 3x3 lateral convs with padding 1; fpn_top_down_levels [1,2,3] (top-down into level 1 as well as level 2)",
    ]),
    ("gelu-tanh", cfg_gelu_tanh, [
        "128x128, backbone hidden_act gelu_pytorch_tanh (tanh-approximate GELU in every Hiera MLP)",
        "backbone layer_norm_eps 1e-5 (Hiera layer_norm1/2)",
        "patch embedding 5x5 kernel, stride 4, padding 2 (instead of 7x7/3)",
        "global attention at block 1 (stage 0, full 32x32 grid, no pooling); 2 heads in every stage; bkg pos-embed 4x4",
        "FPN top-down into every level: fpn_top_down_levels [0,1,2,3] (level 0 = sum of lateral and upsampled level 1)",
        "prompt encoder hidden_act relu / eps 1e-5 and vision-level hidden_act/eps: parsed but do not affect these outputs "
        "(used only by the mask-input embedding / not used at all in transformers 5.17)",
    ]),
]


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------
def build_model(cfg, tmpdir):
    """Sam2Model with hash weights, through save_pretrained/from_pretrained like fixtures.py."""
    m = Sam2Model(copy.deepcopy(cfg)).eval()
    names = apply_hash_weights(m)
    m.save_pretrained(tmpdir, safe_serialization=True)
    m2 = Sam2Model.from_pretrained(tmpdir).eval()
    sd = m2.state_dict()
    for k in names:  # the loaded fp32 weights must be exactly the hash weights
        if not torch.equal(sd[k], hash_tensor(k, tuple(sd[k].shape))):
            raise RuntimeError(f"weight {k} changed through save/load")
    return m2.double(), names


def run_cases(model, S):
    """Five prompt cases on the hash pixels, float64. Returns ({name: float64 tensor}, margins)."""
    pix = hash_pixels((1, 3, S, S)).double()
    out64 = {}
    for name, case in prompt_cases(S).items():
        kw = {k: (v.double() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in case.items()}
        for k, v in case.items():
            if torch.is_tensor(v):
                out64[f"hashpix/in/{name}/{k}"] = v.double()
        with torch.no_grad():
            out = model(pixel_values=pix, **kw)
        for k in ("iou_scores", "pred_masks", "object_score_logits"):
            out64[f"hashpix/out/{name}/{k}"] = getattr(out, k).detach().clone()
        if name == "p1":
            for i, e in enumerate(out.image_embeddings):
                out64[f"hashpix/out/image_embeddings/{i}"] = e.detach().clone()
    return out64


def selection_margins(model, S):
    """For single-mask cases: how close the data-dependent mask choice is to flipping."""
    dec = model.mask_decoder
    res = {}
    pix = hash_pixels((1, 3, S, S)).double()
    with torch.no_grad():
        emb = model.get_image_embeddings(pix)
        for name, case in prompt_cases(S).items():
            if case["multimask_output"]:
                continue
            kw = {k: (v.double() if torch.is_tensor(v) and v.is_floating_point() else v)
                  for k, v in case.items() if k != "multimask_output"}
            r = {}
            dyn = dec.dynamic_multimask_via_stability
            try:
                dec.dynamic_multimask_via_stability = False
                single = model(image_embeddings=emb, multimask_output=False, **kw)
            finally:
                dec.dynamic_multimask_via_stability = dyn
            multi = model(image_embeddings=emb, multimask_output=True, **kw)
            ious = multi.iou_scores.flatten().sort(descending=True).values
            r["multimask_top2_iou_gap"] = float(ious[0] - ious[1])
            if dyn:
                st = dec._get_stability_scores(single.pred_masks).flatten()
                r["stability_score"] = float(st[0])
                r["stability_thresh"] = dec.dynamic_multimask_stability_thresh
                r["uses"] = "mask token 0" if float(st[0]) >= dec.dynamic_multimask_stability_thresh else "best multimask"
                r["stability_margin"] = abs(float(st[0]) - dec.dynamic_multimask_stability_thresh)
            else:
                r["uses"] = "mask token 0 (dynamic selection off)"
            res[name] = r
    return res


def compare(a, b):
    bad = [k for k in a if not torch.equal(a[k], b[k])]
    return bad


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def selftest():
    """Hash function vs sam2-mini-hash/model.safetensors; pipeline vs its hashpix references."""
    d = os.path.join(FIXTURES, "sam2-mini-hash")
    if not os.path.isdir(d):
        print(f"selftest: {d} not found, skipped")
        return {"skipped": True}
    ms = load_file(os.path.join(d, "model.safetensors"))
    nbad = sum(not torch.equal(v, hash_tensor(k, tuple(v.shape))) for k, v in ms.items() if v.is_floating_point())
    if nbad:
        raise RuntimeError(f"selftest: {nbad} tensors of sam2-mini-hash/model.safetensors differ from hash_tensor")
    ref = {k: v for k, v in load_file(os.path.join(d, "reference.safetensors")).items() if k.startswith("hashpix/")}
    with tempfile.TemporaryDirectory() as td:
        m, _ = build_model(cfg_mini(), td)
    got = run_cases(m, 256)
    worst = 0.0
    for k, r in ref.items():
        if k not in got:
            raise RuntimeError(f"selftest: {k} missing from this pipeline's output")
        g = got[k].float()
        if g.shape != r.shape:
            raise RuntimeError(f"selftest: {k} shape {tuple(g.shape)} vs fixture {tuple(r.shape)}")
        rel = float((g.double() - r.double()).norm() / (r.double().norm() + 1e-30))
        worst = max(worst, rel)
        if rel > 1e-5:
            raise RuntimeError(f"selftest: {k} rel L2 {rel:.3e} vs the shipped mini fixture")
    extra = sorted(set(got) - set(ref))
    print(f"selftest: hash weights match {len(ms)} tensors bit for bit; mini hashpix: {len(ref)} tensors, "
          f"worst rel L2 {worst:.2e}" + (f"; extra {extra}" if extra else ""))
    return {"hash_weights_tensors": len(ms), "mini_hashpix_tensors": len(ref), "mini_worst_rel_l2": worst}


def generate(name, make_cfg, exercises, outdir):
    t0 = time.time()
    cfg = make_cfg()
    S = cfg.prompt_encoder_config.image_size
    d = os.path.join(outdir, name)
    with tempfile.TemporaryDirectory() as td1, tempfile.TemporaryDirectory() as td2:
        m1, names = build_model(cfg, td1)
        run1 = run_cases(m1, S)
        # determinism: a second, independently built model and run must be bitwise identical
        m2, _ = build_model(cfg, td2)
        run2 = run_cases(m2, S)
        bad = compare(run1, run2)
        if bad:
            raise RuntimeError(f"non-deterministic float64 outputs: {bad}")
        margins = selection_margins(m1, S)
        nonfinite = [k for k, v in run1.items() if not torch.isfinite(v).all()]
        if nonfinite:
            raise RuntimeError(f"non-finite outputs: {nonfinite}")
        os.makedirs(d, exist_ok=True)
        shutil.copyfile(os.path.join(td1, "config.json"), os.path.join(d, "config.json"))
    # config.json must rebuild the same architecture (state-dict names and shapes)
    back = Sam2Config.from_json_file(os.path.join(d, "config.json"))
    with torch.device("meta"):
        mb = Sam2Model(back)
    if {k: tuple(v.shape) for k, v in mb.state_dict().items()} != {k: tuple(v.shape) for k, v in m1.state_dict().items()}:
        raise RuntimeError("config.json does not rebuild the same state dict")
    tensors = {k: v.float().contiguous() for k, v in run1.items()}
    ref = os.path.join(d, "reference.safetensors")
    # no safetensors metadata: its key order is not stable, and the files should be byte-reproducible
    # (provenance goes to manifest.json instead)
    save_file(tensors, ref)
    os.chmod(ref, 0o644)
    sizes = {f: os.path.getsize(os.path.join(d, f)) for f in ("config.json", "reference.safetensors")}
    entry = {
        "name": name,
        "image_size": S,
        "exercises": exercises,
        "files": {f: {"bytes": sizes[f], "sha256": sha256(os.path.join(d, f))} for f in sizes},
        "num_hashed_state_dict_tensors": len(names),
        "num_parameters": sum(p.numel() for p in m1.parameters()),
        "tensors": {k: list(v.shape) for k, v in sorted(tensors.items())},
        "single_mask_selection_margins": margins,
        "deterministic_float64": True,
    }
    entry_seconds = round(time.time() - t0, 1)  # printed only: manifest.json stays reproducible
    if sizes["reference.safetensors"] > SIZE_TARGET:
        entry["note"] = f"reference.safetensors is {sizes['reference.safetensors']} bytes, over the {SIZE_TARGET} target"
    return entry, entry_seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--only", default="", help="comma-separated config names (default: all)")
    ap.add_argument("--no-selftest", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(0)  # hash weights overwrite every random init; this only pins anything left over
    os.makedirs(a.outdir, exist_ok=True)
    only = set(filter(None, a.only.split(",")))
    unknown = only - {n for n, _, _ in CONFIGS}
    if unknown:
        sys.exit(f"unknown config(s): {sorted(unknown)}")
    manifest = {"generator": "tools/gen_reference.py", "transformers": transformers.__version__,
                "torch": torch.__version__, "compute_dtype": "float64", "stored_dtype": "float32",
                "input": "hash_pixels((1,3,S,S)) (fixtures README, name 'pixel_values', value 2v)",
                "weights": "hash weights keyed by Sam2Model state-dict name (fixtures README)",
                "cases": list(prompt_cases(256)), "configs": [], "rejected": []}
    if not a.no_selftest:
        manifest["selftest"] = selftest()
    for name, make_cfg, exercises in CONFIGS:
        if only and name not in only:
            continue
        try:
            e, secs = generate(name, make_cfg, exercises, a.outdir)
            manifest["configs"].append(e)
            print(f"{name:16s} S={e['image_size']:3d} params={e['num_parameters']:8d} "
                  f"reference={e['files']['reference.safetensors']['bytes']:7d} B "
                  f"config={e['files']['config.json']['bytes']:5d} B  {secs}s  deterministic"
                  + (f"  [{e['note']}]" if "note" in e else ""))
        except Exception as ex:  # a config transformers rejects: record and go on
            traceback.print_exc()
            manifest["rejected"].append({"name": name, "exception": f"{type(ex).__name__}: {ex}"})
            print(f"{name}: REJECTED: {type(ex).__name__}: {ex}")
    total = sum(f["bytes"] for e in manifest["configs"] for f in e["files"].values())
    manifest["total_bytes"] = total
    with open(os.path.join(a.outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"\n{len(manifest['configs'])} configs, {len(manifest['rejected'])} rejected, total {total} bytes "
          f"({total / 1024:.1f} KiB) + manifest.json")
    for e in manifest["configs"]:
        for c, r in e["single_mask_selection_margins"].items():
            print(f"  {e['name']:16s} {c:6s} {r}")
    return 1 if manifest["rejected"] else 0


if __name__ == "__main__":
    sys.exit(main())
