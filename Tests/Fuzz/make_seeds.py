#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into Tests/Fuzz/corpus/TARGET/: a few valid files and a few
that are nearly valid, each a few KB at most. Deterministic; run it again after changing it. The files named
found-before-* are not written here: they are inputs that fuzzing found to crash the parsers before they were
made total, kept as regression seeds."""
import gzip, json, os, struct, zlib

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

def write(target, name, data):
    os.makedirs(os.path.join(root, target), exist_ok=True)
    with open(os.path.join(root, target, name), "wb") as f:
        f.write(data)

def gz(data):
    return gzip.compress(data, mtime=0)

# safetensors
def safetensors(header, data, pad=True):
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data

floats = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
write("safetensors", "two-tensors", safetensors({
    "conv.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
    "bn.num_batches_tracked": {"dtype": "I64", "shape": [], "data_offsets": [24, 32]},
    "__metadata__": {"format": "pt", "kiln.config": "{\"a\": [1, 2]}"}}, floats + struct.pack("<q", 7)))
write("safetensors", "empty", safetensors({}, b""))
write("safetensors", "empty-tensor", safetensors({"e": {"dtype": "F32", "shape": [0, 4], "data_offsets": [0, 0]},
                                                  "x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, floats[:4]))
write("safetensors", "escapes", safetensors({"t\u00e9\u20ac": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                             "__metadata__": {"k\"\\/": "\ud83d\ude00\n\t"}}, floats[:4]) )
write("safetensors", "overlap", safetensors({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                             "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, floats))
write("safetensors", "hole", safetensors({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                          "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}}, floats))
write("safetensors", "bf16", safetensors({"a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}, floats[:4]))
write("safetensors", "overflow", safetensors({"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 4], "data_offsets": [0, 0]}}, b""))

# IDX
def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + data

images = idx([3, 2, 2], bytes(range(12)))
write("idx", "images", images)
write("idx", "labels", idx([5], bytes([0, 1, 2, 3, 9])))
write("idx", "images.gz", gz(images))
write("idx", "labels-two-members.gz", gz(idx([2], b"\x01")) + gz(b"\x02"))
write("idx", "truncated", images[:-3])
write("idx", "floats", bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 1) + b"\0\0\0\0")
write("idx", "overflow", bytes([0, 0, 8, 3]) + b"\xff" * 12)

# CIFAR-10 binary: a label byte and 3,072 pixel bytes per record
def record(label, seed):
    return bytes([label]) + bytes((seed * 7 + i) % 256 for i in range(3072))

write("cifar", "one-record", record(3, 1))
write("cifar", "two-records.gz", gz(record(0, 2) + record(9, 3)))
write("cifar", "bad-label", record(10, 4))
write("cifar", "short", record(1, 5)[:3000])

# PNG
def chunk(kind, data, crc=None):
    kind = kind.encode()
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) if crc is None else crc)

SIGNATURE = b"\x89PNG\r\n\x1a\n"

def png(width, height, colour, rows, depth=8, level=9, split=None, extra=b""):
    stream = zlib.compress(b"".join(rows), level)
    ihdr = chunk("IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
    idat = b"".join(chunk("IDAT", stream[i:i + split]) for i in range(0, len(stream), split)) if split else chunk("IDAT", stream)
    return SIGNATURE + ihdr + extra + idat + chunk("IEND", b"")

write("png", "grey-1x1", png(1, 1, 0, [b"\x00\x80"]))
write("png", "rgb-2x2-filters", png(2, 2, 2, [b"\x01\x0a\x14\x1e\x1e\x28\x32", b"\x04\x28\x1e\x14\x96\x3c\xb0"], level=0))
write("png", "rgba-3x2", png(3, 2, 6, [b"\x00" + bytes(range(12)), b"\x02" + bytes(range(12, 24))]))
write("png", "grey-alpha-4x4-split", png(4, 4, 4, [bytes([f]) + bytes(range(8)) for f in range(4)], split=7,
                                          extra=chunk("tEXt", b"Comment\0fuzz") + chunk("gAMA", struct.pack(">I", 45455))))
write("png", "grey-8x8-average", png(8, 8, 0, [b"\x03" + bytes(range(r, r + 8)) for r in range(8)]))
bad_crc = bytearray(png(1, 1, 0, [b"\x00\x80"]))
bad_crc[-13] ^= 1
write("png", "bad-crc", bytes(bad_crc))
write("png", "palette", SIGNATURE + chunk("IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 3, 0, 0, 0)) + chunk("PLTE", b"\0\0\0")
      + chunk("IDAT", zlib.compress(b"\x00\x00")) + chunk("IEND", b""))
write("png", "huge", SIGNATURE + chunk("IHDR", struct.pack(">IIBBBBB", 0x7FFFFFFF, 0x7FFFFFFF, 8, 6, 0, 0, 0))
      + chunk("IDAT", zlib.compress(b"\x00" * 64)) + chunk("IEND", b""))

# PGM
write("pgm", "grey-3x2", b"P5\n3 2\n255\n" + bytes([0, 50, 100, 150, 200, 255]))
write("pgm", "comments", b"P5 # a comment\n# another\n2 2 # here too\n15\n" + bytes([0, 5, 10, 15]))
write("pgm", "sixteen-bit", b"P5 2 1 1000\n" + struct.pack(">HH", 500, 1000))
write("pgm", "truncated", b"P5\n4 4\n255\n" + bytes(5))
write("pgm", "above-maxval", b"P5 2 1 100\n" + bytes([100, 200]))
write("pgm", "overflow", b"P5 99999999999 99999999999 255\n\0")

# config.json, as `kiln train` writes it, and nearly valid ones
def config(**changes):
    value = {"batchSize": 64, "data": "fashion-mnist", "device": "auto", "earlyStop": 3, "epochs": 10, "lr": 0.05,
             "model": "lenet-bn", "momentum": 0.9, "optimizer": "nesterov", "resolvedDevice": "host",
             "deviceName": "host (2 threads)", "schedule": "cosine", "seed": 1, "valSplit": 0.1, "weightDecay": 0.0005}
    value.update(changes)
    return json.dumps({k: v for k, v in value.items() if v is not None}, indent=2, sort_keys=True).encode()

write("config", "train", config())
write("config", "minimal", config(earlyStop=None, resolvedDevice=None, deviceName=None))
write("config", "negative-epochs", config(epochs=-1))
write("config", "split-one", config(valSplit=1))
write("config", "huge-seed", config(seed=18446744073709551615))
write("config", "lr-string", config(lr="fast"))

# the fit state in a checkpoint's metadata (kiln.state), as the checkpoint writer encodes it
def fit_state(**changes):
    value = {"bestScore": 0.31, "elapsedSeconds": 12.5, "epochsWithoutImprovement": 1, "learningRate": 0.025,
             "partialEpoch": {"images": 640, "misclassified": 71, "seconds": 1.5, "stepLosses": [0.5, 0.25, 0.125]},
             "position": {"batch": 10, "epoch": 2, "step": 1886},
             "scheduler": {"bestLoss": 0.31, "epochsWithoutImprovement": 1, "plateauScale": 0.1}, "seed": 1}
    value.update(changes)
    return json.dumps({k: v for k, v in value.items() if v is not None}, separators=(",", ":"), sort_keys=True).encode()

write("fitstate", "inside-an-epoch", fit_state())
write("fitstate", "epoch-end", fit_state(partialEpoch=None, bestScore="inf"))
write("fitstate", "fresh", fit_state(partialEpoch=None, bestScore=None, learningRate=None,
                                     scheduler={"epochsWithoutImprovement": 0, "plateauScale": 1}))
write("fitstate", "negative-step", fit_state(position={"batch": 0, "epoch": 0, "step": -1}))
write("fitstate", "nan-loss", fit_state(scheduler={"bestLoss": "nan", "epochsWithoutImprovement": 0, "plateauScale": 1}))

# JPEG: the test fixtures (made by Tests/KilnTests/Fixtures/jpeg_fixture.py) and a truncated copy
fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "KilnTests", "Fixtures")
for name in ["colour.jpg", "grey.jpg", "cmyk.jpg"]:
    with open(os.path.join(fixtures, name), "rb") as f:
        data = f.read()
    write("jpeg", name.replace(".jpg", ""), data)
    if name == "colour.jpg":
        write("jpeg", "truncated", data[: len(data) // 2])
