"""nudenet 3.4.2 ``320n.onnx`` (YOLOv8n, 18 classes) as ``nudenet/nudenet.py`` reads it: input ``images``
[batch, 3, height, width] RGB in [0, 1]; output ``output0`` [batch, 22, anchors] (2100 anchors at 320x320: the
40x40, 20x20 and 10x10 grids), batch on axis 0. Per anchor, channels 0-3 are the box centre and size in input
pixels and channels 4-21 the 18 class scores; a detection is the best class of an anchor, boxes after NMS."""

SLOW = True
OUTPUTS = {
    "output0": {
        "batch_axis": 0,
        "parts": {"boxes": {"axis": 1, "start": 0, "stop": 4}, "scores": {"axis": 1, "start": 4, "stop": 22}},
        "task": {"kind": "detection", "format": "yolov8", "boxes": (0, 4), "scores": (4, 22), "top_k": 10},
    },
}
