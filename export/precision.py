"""Reduced-precision graphs: the dynamics weights on the planning path in int8 or bf16.

:func:`convert` rewrites an exported fp32 graph. Every ``MatMul`` / ``Gemm`` whose right
operand is a constant 2-D float weight and whose left operand depends on ``from_inputs``
(the controller's ``noise``: the candidates' rollouts; the dynamics graph's ``obs``/``act``)
is replaced:

* ``int8``: ONNX Runtime's ``com.microsoft.DynamicQuantizeMatMul`` with the weight quantised
  symmetrically per output column (scale = max |column| / 127) and the activations quantised
  per call; a ``Gemm``'s bias becomes the operator's bias input. On CPUs with VNNI this runs
  the product in 8-bit integer arithmetic.
* ``bf16``: the weight stored as bfloat16 and cast back to float32 in the graph. ONNX Runtime's
  CPU provider has no bfloat16 arithmetic (its ``MatMul`` has no bfloat16 kernel), so the
  product stays float32: the weights carry bf16 precision (and half the bytes), the speed is
  float32's.

Everything else stays float32: the adaptation step (its gradients read the float32 weights,
kept as they are for those nodes), the low-rank correction of adapted layers, the reward and
the planner's arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PRECISIONS = ("fp32", "int8", "bf16")

#: What each precision does, for manifests and the command line.
PRECISION_DOCS = {
    "fp32": "float32 throughout",
    "int8": "dynamics weights on the planning path quantised to int8 per output column "
            "(DynamicQuantizeMatMul, activations quantised per call); adaptation, corrections, "
            "reward and planner in float32",
    "bf16": "dynamics weights on the planning path stored as bfloat16 and cast to float32 "
            "(ONNX Runtime's CPU provider has no bfloat16 arithmetic: float32 speed)",
}


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"--precision={precision!r}: allowed {', '.join(PRECISIONS)}")
    return precision


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert` changed."""

    precision: str
    nodes: int  # products rewritten
    weight_bytes_fp32: int  # of the rewritten weights, before
    weight_bytes: int  # after

    def to_dict(self) -> dict[str, int | str]:
        return {"precision": self.precision, "nodes": self.nodes,
                "weight_bytes_fp32": self.weight_bytes_fp32, "weight_bytes": self.weight_bytes}


def _downstream(graph: onnx.GraphProto, sources: Iterable[str]) -> set[str]:
    """Every tensor computed from ``sources`` (ONNX nodes are stored in topological order)."""
    reach = set(sources)
    for node in graph.node:
        if any(i in reach for i in node.input):
            reach.update(node.output)
    return reach


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _plain_gemm(node: onnx.NodeProto) -> bool:
    """A Gemm that is ``A @ B + C`` (no transposes, unit alpha and beta)."""
    a = _attrs(node)
    return (not a.get("transA", 0) and not a.get("transB", 0) and a.get("alpha", 1.0) == 1.0
            and a.get("beta", 1.0) == 1.0)


def quantize_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-column int8: ``w ≈ q * scale`` with ``q`` in [-127, 127]."""
    scale = np.abs(w).max(axis=0) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    return q, scale


def convert(model: onnx.ModelProto, precision: str, from_inputs: Iterable[str]
            ) -> Conversion:
    """Rewrite ``model`` in place for ``precision`` (see the module docstring)."""
    check_precision(precision)
    if precision == "fp32":
        return Conversion(precision, 0, 0, 0)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    reach = _downstream(g, from_inputs)
    nodes: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    converted: dict[str, tuple[str, ...]] = {}  # weight -> names of its converted tensors
    n = bytes_fp32 = bytes_new = 0
    for node in g.node:
        w = inits.get(node.input[1]) if len(node.input) > 1 else None
        ok = (node.op_type in ("MatMul", "Gemm") and node.input[0] in reach and w is not None
              and w.data_type == TensorProto.FLOAT and len(w.dims) == 2
              and (node.op_type == "MatMul" or _plain_gemm(node)))
        if not ok:
            nodes.append(node)
            continue
        assert w is not None
        n += 1
        name = w.name
        if name not in converted:
            arr = numpy_helper.to_array(w)
            bytes_fp32 += arr.nbytes
            if precision == "int8":
                q, scale = quantize_columns(arr)
                names = (f"{name}_int8", f"{name}_scale", f"{name}_zero")
                new_inits += [numpy_helper.from_array(q, names[0]),
                              numpy_helper.from_array(scale, names[1]),
                              numpy_helper.from_array(np.zeros(q.shape[1], np.int8), names[2])]
                bytes_new += q.nbytes + scale.nbytes + q.shape[1]
            else:
                names = (f"{name}_bf16", f"{name}_from_bf16")
                new_inits.append(helper.make_tensor(names[0], TensorProto.BFLOAT16,
                                                    arr.shape, _bf16_bits(arr).tobytes(),
                                                    raw=True))
                nodes.append(helper.make_node("Cast", [names[0]], [names[1]],
                                              to=TensorProto.FLOAT, name=f"{name}_cast"))
                bytes_new += arr.size * 2
            converted[name] = names
        names = converted[name]
        bias = list(node.input[2:3])
        if precision == "int8":
            nodes.append(helper.make_node(
                "DynamicQuantizeMatMul", [node.input[0], *names, *bias], list(node.output),
                name=f"{node.name or name}_int8", domain="com.microsoft"))
        else:
            nodes.append(helper.make_node(node.op_type, [node.input[0], names[1], *bias],
                                          list(node.output), name=node.name,
                                          domain=node.domain))
            nodes[-1].attribute.extend(node.attribute)
    still_used = {i for node in nodes for i in node.input}
    kept = [t for t in g.initializer if t.name in still_used]
    del g.node[:]
    g.node.extend(nodes)  # still in order: each Cast was added just before its first user
    del g.initializer[:]
    g.initializer.extend(kept + new_inits)
    if precision == "int8" and n and not any(o.domain == "com.microsoft"
                                              for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return Conversion(precision, n, bytes_fp32, bytes_new)


def _bf16_bits(arr: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, rounded to nearest even."""
    bits = np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32)
    rounded = bits + 0x7FFF + ((bits >> 16) & 1)
    return (rounded >> 16).astype(np.uint16)
