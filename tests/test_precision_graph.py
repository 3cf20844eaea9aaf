import onnx
from onnx import TensorProto, helper

from optbench.export.precision import _drop_duplicate_casts, _unique_node_names


def test_duplicate_casts_are_dropped_and_names_made_unique():
    cast = lambda name: helper.make_node("Cast", ["x"], ["x16"], name=name, to=TensorProto.FLOAT16)  # noqa: E731
    relu = helper.make_node("Relu", ["x16"], ["y"], name="n")
    other = helper.make_node("Relu", ["y"], ["z"], name="n")
    graph = helper.make_graph([cast("c"), cast("c"), relu, other], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT16, [2])])
    _drop_duplicate_casts(graph)
    _unique_node_names(graph)
    assert [n.op_type for n in graph.node] == ["Cast", "Relu", "Relu"]
    assert len({n.name for n in graph.node}) == 3
    onnx.checker.check_model(helper.make_model(graph))
