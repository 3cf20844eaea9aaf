"""magika 1.0.3 ``models/standard_v3_3/model.onnx`` as ``magika/magika.py`` reads it: input ``bytes`` (n, 2048)
int32, the first 1024 and last 1024 byte values of a file (256 = padding); output ``target_label`` (n, 214),
batch on axis 0, one probability per content type of ``config.min.json`` ``target_labels_space`` (the package
takes the argmax as the model's label and its value as the score)."""

SLOW = True  # about 45 s: behind the slow marker (CI runs it)

OUTPUTS = {
    "target_label": {"batch_axis": 0, "task": {"kind": "classification", "top_k": 5}},
}
