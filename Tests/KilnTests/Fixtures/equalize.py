#!/usr/bin/env python3
"""Writes equalize.json: small 8-bit images and PIL's ImageOps.equalize of each channel, the independent answers
for Kiln's histogram equalisation. Needs Pillow; deterministic; run it again after changing it."""
import json, os, random
from PIL import Image, ImageOps

rng = random.Random(5)
cases = []
for channels, height, width, levels in [(1, 7, 9, (0, 255)), (1, 13, 11, (40, 90)), (3, 5, 6, (0, 255)), (1, 4, 4, (7, 7)),
                                        (1, 16, 20, (100, 180))]:
    planes = [[rng.randint(*levels) for _ in range(height * width)] for _ in range(channels)]
    expected = []
    for plane in planes:
        image = Image.new("L", (width, height))
        image.putdata(plane)
        expected += list(ImageOps.equalize(image).getdata())
    cases.append({"channels": channels, "height": height, "width": width, "input": sum(planes, []), "expected": expected})
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "equalize.json"), "w") as f:
    json.dump(cases, f)
