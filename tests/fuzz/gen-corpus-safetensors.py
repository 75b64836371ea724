#!/usr/bin/env python3
"""Writes the seed corpus of fuzz-safetensors into corpus/safetensors/ (standard library only).

Valid files cover every dtype, metadata, scalars, empty tensors and escaped names; invalid ones
each break one rule of the format, so the fuzzer starts next to every error path. Run it again
after changing a seed; inputs the fuzzer found that once crashed go in as crash-<what> by hand.
"""
import json
import os
import struct

SIZES = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "BF16": 2, "F16": 2, "I16": 2,
         "I8": 1, "U8": 1, "BOOL": 1}
RANK = ["BOOL", "U8", "I8", "I16", "F16", "BF16", "I32", "F32", "F64", "I64"]


def image(header, data=b""):
    """8-byte little-endian header length, the header text as given, the data."""
    h = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(h)) + h + data


def save(tensors, metadata=None):
    """What safetensors.torch.save_file writes: tensors = {name: (dtype, shape, bytes)}."""
    order = sorted(tensors, key=lambda n: (-RANK.index(tensors[n][0]), n))
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name in order:
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False)
    text += " " * (-len(text.encode()) % 8)
    return image(text, data)


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def seeds():
    specials16 = struct.pack("<8H", 0x0000, 0x8000, 0x0001, 0x03ff, 0x3c00, 0x7bff, 0x7c00, 0x7e01)
    yield "valid-empty", save({})
    yield "valid-metadata", save({}, {"format": "pt", "note": "é \" \\ \n"})
    yield "valid-f32", save({"w": ("F32", [2, 2], struct.pack("<4f", 1, -2, 0.5, 3e38))},
                            {"format": "pt"})
    yield "valid-f16-specials", save({"h": ("F16", [8], specials16)})
    yield "valid-bf16-specials", save({"b": ("BF16", [8], specials16)})
    yield "valid-f64", save({"d": ("F64", [3], struct.pack("<3d", 1e300, -0.0, 1e-300))})
    yield "valid-all-dtypes", save({dt.lower(): (dt, [3], bytes(range(3 * SIZES[dt])))
                                    for dt in SIZES})
    yield "valid-scalar-and-empty", save({"s": ("F32", [], struct.pack("<f", 7)),
                                          "e": ("F16", [0, 4], b""), "z": ("U8", [0], b"")})
    yield "valid-names", save({"a\"b\\c\u00e9\U0001F600\n": ("U8", [1], b"\x01"),
                               "": ("I8", [1], b"\x02")})
    yield "valid-eight-dims", save({"t": ("U8", [1, 1, 1, 1, 1, 1, 2, 1], b"\x01\x02")})
    # found by the fuzzer: the product of the first two dimensions fits in 64 bits unsigned but
    # not signed; the zero makes the tensor empty and valid (it broke the harness, not the reader)
    yield "valid-zero-after-huge-dims", image(json.dumps(
        {"x": entry("F64", [4294967296, 4294967293, 0], 0, 0)}))
    yield "valid-unsorted-offsets", image(json.dumps(
        {"b": entry("U8", [2], 2, 4), "a": entry("U8", [2], 0, 2)}), b"abcd")
    yield "valid-unaligned", image('{"x":' + json.dumps(entry("F32", [1], 0, 4)) + "}",
                                   struct.pack("<f", 1.5))
    yield "bad-empty-file", b""
    yield "bad-short", b"\x02\x00\x00"
    yield "bad-header-past-eof", struct.pack("<Q", 64) + b"{}"
    yield "bad-header-huge", struct.pack("<Q", 2 ** 40) + b"{}      "
    yield "bad-header-empty", image("        ")
    yield "bad-not-utf8", image(b'{"\xff":1}')
    yield "bad-not-json", image("{hello}")
    yield "bad-trailing-json", image('{} {"a":1}')
    yield "bad-single-quotes", image("{'a':1}")
    yield "bad-deep", image('{"a":' + "[" * 40 + "]" * 40 + "}")
    yield "bad-not-object", image("[1,2,3]")
    yield "bad-nul-escape", image('{"a\\u0000":1}')
    yield "bad-lone-surrogate", image('{"\\ud800":1}')
    yield "bad-int-range", image('{"x":' + json.dumps(entry("U8", [1], 0, 1))
                                 .replace("[1]", "[9223372036854775808]") + "}", b"\x00")
    yield "bad-entry-not-object", image('{"x":[1]}')
    yield "bad-unknown-dtype", image(json.dumps({"x": entry("F17", [1], 0, 4)}), b"\0" * 4)
    yield "bad-foreign-dtype", image(json.dumps({"x": entry("U16", [2], 0, 4)}), b"\0" * 4)
    yield "bad-negative-dim", image(json.dumps({"x": entry("U8", [-1], 0, 0)}))
    yield "bad-float-dim", image(json.dumps({"x": entry("U8", [1.5], 0, 1)}), b"\0")
    yield "bad-nine-dims", image(json.dumps({"x": entry("U8", [1] * 9, 0, 1)}), b"\0")
    yield "bad-overflow", image(json.dumps({"x": entry("F64", [2 ** 32, 2 ** 32, 2], 0, 0)}))
    yield "bad-offsets-past-end", image(json.dumps({"x": entry("F32", [25], 0, 100)}), b"\0" * 64)
    yield "bad-offsets-reversed", image(json.dumps({"x": entry("F32", [1], 4, 0)}), b"\0" * 4)
    yield "bad-offsets-shape", image(json.dumps({"x": entry("F32", [2, 3], 0, 20)}), b"\0" * 20)
    yield "bad-overlap", image(json.dumps({"a": entry("U8", [4], 0, 4), "b": entry("U8", [4], 2, 6)}),
                               b"\0" * 6)
    yield "bad-gap", image(json.dumps({"a": entry("U8", [2], 0, 2), "b": entry("U8", [2], 3, 5)}),
                           b"\0" * 5)
    yield "bad-trailing-data", image(json.dumps({"a": entry("U8", [2], 0, 2)}), b"\0" * 3)
    yield "bad-truncated", save({"w": ("F32", [4], b"\0" * 16)})[:-3]
    yield "bad-duplicate", image('{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                 '"x":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"\0\0")
    yield "bad-metadata-type", image('{"__metadata__":{"epoch":3}}')
    yield "bad-metadata-array", image('{"__metadata__":["a"]}')


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "safetensors")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds():
        assert len(data) < 4096, name
        with open(os.path.join(out, name + ".safetensors"), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
