"""nudity 0.2.3 ``nudity/files/retrained_graph.pb``: a frozen TF 1 graph, MobileNet retrained by TensorFlow's
retrain.py for two classes, read as nudity's ``Nudity.score``: placeholder ``input`` (1, 224, 224, 3) float32,
(x - 128) / 128; output ``final_result:0`` (1, 2) softmax (class 1 'nude', judged nude at >= 0.8), the graph's one
terminal node. Batch on axis 0 (the placeholder's first dim is fixed at 1)."""

OUTPUTS = {
    "final_result:0": {"batch_axis": 0, "task": {"kind": "classification", "top_k": 1}},
}
