"""Reads a Kiln run folder's TensorBoard event files with TensorBoard's own reader and compares them with
the run's steps.csv and metrics.csv.

Usage: python3 tensorboard_check.py RUN_FOLDER [--image TAG ...]

Checks that every step of steps.csv has its batch/loss and batch/lr at its step, that every epoch row of
metrics.csv has its epoch/<column> scalars at its epoch, that nothing else was logged under those tags,
and that each image TAG is a PNG of the size the event says. Prints a summary; exits 1 on a mismatch.
"""
import csv
import math
import struct
import sys

from tensorboard.backend.event_processing import event_accumulator


def close(a, b, relative):
    return math.isclose(a, b, rel_tol=relative, abs_tol=1e-12)


def main():
    folder = sys.argv[1]
    images = sys.argv[sys.argv.index("--image") + 1:] if "--image" in sys.argv else []
    events = event_accumulator.EventAccumulator(folder, size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0})
    events.Reload()
    tags = events.Tags()
    problems = []

    def scalars(tag):
        return {event.step: event.value for event in events.Scalars(tag)} if tag in tags["scalars"] else {}

    with open(f"{folder}/steps.csv") as file:
        steps = list(csv.DictReader(file))
    losses, rates = scalars("batch/loss"), scalars("batch/lr")
    if sorted(losses) != [int(row["step"]) for row in steps]:
        problems.append(f"batch/loss has steps {sorted(losses)[:5]}..., steps.csv {[row['step'] for row in steps][:5]}...")
    for row in steps:
        step = int(row["step"])
        # Both hold float32 values: the CSV as the shortest text that reads back to it.
        if step in losses and not close(losses[step], float(row["loss"]), 1e-6):
            problems.append(f"step {step}: batch/loss {losses[step]} but steps.csv {row['loss']}")
        if row["lr"] and not (step in rates and close(rates[step], float(row["lr"]), 1e-6)):
            problems.append(f"step {step}: batch/lr {rates.get(step)} but steps.csv {row['lr']}")

    with open(f"{folder}/metrics.csv") as file:
        epochs = list(csv.DictReader(file))
    columns = [name for name in epochs[0] if name not in ("epoch", "step", "seconds")]
    for column in columns:
        logged = scalars(f"epoch/{column}")
        if sorted(logged) != [int(row["epoch"]) for row in epochs]:
            problems.append(f"epoch/{column} has epochs {sorted(logged)}, metrics.csv {[row['epoch'] for row in epochs]}")
        for row in epochs:
            epoch = int(row["epoch"])
            # metrics.csv keeps six significant digits.
            if epoch in logged and not close(logged[epoch], float(row[column]), 1e-5):
                problems.append(f"epoch {epoch}: epoch/{column} {logged[epoch]} but metrics.csv {row[column]}")

    for tag in images:
        if tag not in tags["images"]:
            problems.append(f"no image {tag} (images: {tags['images']})")
            continue
        for image in events.Images(tag):
            png = image.encoded_image_string
            width, height = struct.unpack(">II", png[16:24]) if png[:8] == b"\x89PNG\r\n\x1a\n" else (None, None)
            if (width, height) != (image.width, image.height):
                problems.append(f"image {tag} at step {image.step}: PNG {width}×{height}, event {image.width}×{image.height}")

    for problem in problems[:20]:
        print("FAIL " + problem)
    print(f"{len(steps)} steps, {len(epochs)} epochs × {len(columns)} columns, {len(images)} image tags: "
          + ("all match" if not problems else f"{len(problems)} mismatches"))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
