"""Checks Kiln's ONNX exports with ONNX's own checker and onnxruntime.

Usage: python3 onnx_check.py MANIFEST.json

The manifest lists cases, each an exported model and what Kiln computed with it:
  {"name": ..., "onnx": FILE, "inputs": NPY, "outputs": NPY, "labels": NPY or null,
   "batch": "dynamic" or N, "opset": N}
For each case: onnx.checker.check_model with full shape inference; the declared opset, batch dimension and
output shape; onnxruntime's outputs on Kiln's inputs within 1e-4 (absolute) of Kiln's; and, with labels, the
same accuracy. A dynamic-batch model also runs on a single image. Prints one line per case; exits 1 if any
case fails.
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime

TOLERANCE = 1e-4


def check(case):
    model = onnx.load(case["onnx"])
    onnx.checker.check_model(model, full_check=True)
    opsets = {entry.domain: entry.version for entry in model.opset_import}
    assert opsets.get("", None) == case["opset"], f"opset {opsets} is not {case['opset']}"
    batch_dimension = model.graph.input[0].type.tensor_type.shape.dim[0]
    if case["batch"] == "dynamic":
        assert batch_dimension.dim_param == "batch", f"input batch dimension {batch_dimension} is not dynamic"
    else:
        assert str(batch_dimension.dim_value) == str(case["batch"]), f"input batch dimension {batch_dimension} is not {case['batch']}"

    inputs = np.load(case["inputs"])
    expected = np.load(case["outputs"])
    session = onnxruntime.InferenceSession(case["onnx"], providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    (outputs,) = session.run(None, {input_name: inputs})
    assert outputs.shape == expected.shape, f"onnxruntime's output is {outputs.shape}, Kiln's {expected.shape}"
    difference = float(np.max(np.abs(outputs - expected)))
    assert difference <= TOLERANCE, f"outputs differ by up to {difference:.3g} (tolerance {TOLERANCE})"
    line = f"{case['name']}: {len(inputs)} images, max |onnxruntime − Kiln| {difference:.2e}"

    if case["batch"] == "dynamic" and len(inputs) > 1:
        (single,) = session.run(None, {input_name: inputs[-1:]})
        single_difference = float(np.max(np.abs(single - expected[-1:])))
        assert single_difference <= TOLERANCE, f"batch 1 differs from Kiln by up to {single_difference:.3g}"

    if case.get("labels"):
        labels = np.load(case["labels"]).astype(np.int64)
        kiln_accuracy = float(np.mean(np.argmax(expected, axis=1) == labels))
        runtime_accuracy = float(np.mean(np.argmax(outputs, axis=1) == labels))
        assert runtime_accuracy == kiln_accuracy, f"accuracy {runtime_accuracy:.4f} under onnxruntime, {kiln_accuracy:.4f} in Kiln"
        line += f", accuracy {100 * runtime_accuracy:.2f}% in both"
    return line


def main():
    with open(sys.argv[1]) as file:
        cases = json.load(file)
    failures = 0
    for case in cases:
        try:
            print("ok   " + check(case))
        except Exception as error:  # every failure is reported, then the exit status says there was one
            failures += 1
            print(f"FAIL {case['name']}: {error}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
