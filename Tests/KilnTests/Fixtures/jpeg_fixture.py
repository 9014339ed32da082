"""Writes the JPEG fixtures of ImageFolderTests and what Pillow decodes them to.

colour.jpg (7×5 RGB) and grey.jpg (5×3 grey) are small smooth patterns, saved at quality 90; jpeg_decoded.json
holds, for each, Pillow's decoded width, height, channel count and HWC bytes, which Kiln's decoder must match
within a couple of levels (libjpeg versions round their inverse DCT and upsampling slightly differently).
cmyk.jpg (2×2) is one Kiln refuses. Run from this folder: python3 jpeg_fixture.py
"""
import json

from PIL import Image

colour = Image.new("RGB", (7, 5))
colour.putdata([(30 * x + 10, 40 * y + 20, 200 - 15 * x - 20 * y) for y in range(5) for x in range(7)])
colour.save("colour.jpg", quality=90)
grey = Image.new("L", (5, 3))
grey.putdata([20 + 40 * x + 25 * y for y in range(3) for x in range(5)])
grey.save("grey.jpg", quality=90)
# Kiln refuses CMYK JPEGs by name; this one is for that error.
Image.new("CMYK", (2, 2), (0, 128, 255, 10)).save("cmyk.jpg", quality=90)

decoded = {}
for name in ["colour.jpg", "grey.jpg"]:
    with Image.open(name) as image:
        channels = len(image.getbands())
        data = list(image.tobytes())
        decoded[name] = {"width": image.width, "height": image.height, "channels": channels, "hwc": data}
with open("jpeg_decoded.json", "w") as f:
    json.dump(decoded, f, indent=1)
