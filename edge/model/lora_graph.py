"""Graph surgery on optimum's KV-cache export: per-row LoRA from a resident adapter bank, and
logits for the last position only. Uses the ``onnx`` package only (no torch).

For each target projection ``y = x @ W`` (a MatMul named ``/model/layers.{i}/self_attn/q_proj/MatMul``
by the torch exporter's scope naming; x [batch, seq, d_in], W [d_in, d_out]) we add::

    A_g = Gather(lora_A.{i}.{m} [slots, d_in, R], lora_index [batch], axis=0)   -> [batch, d_in, R]
    (R, the rank axis, is dynamic: any R <= max_rank; smaller ranks are zero-padded to R)
    B_g = Gather(lora_B.{i}.{m} [slots, R, d_out], lora_index, axis=0)         -> [batch, R, d_out]
    (Cast A_g, B_g to float32 when the bank is float16)
    y'  = y + (x @ A_g) @ B_g          x @ A_g: [batch, seq, R];  then [batch, seq, d_out]

Doing x @ A first keeps the extra work at 2 * seq * R * (d_in + d_out) per row, tiny next to W.
Adding to the MatMul output (before any bias Add, Qwen2) equals adding to the Linear's output.
The bank is a graph *input*, not an initializer: the engine binds one numpy array per input for the
whole process and writes adapters into slots in place; only the rows' slot indices change per run.

The final norm's output is sliced to the last position before the lm_head MatMul, so ``logits``
is [batch, 1, vocab] (left padding puts every row's last token there). For SmolLM2 the lm_head is
576 x 49152: computing it for every prefill position was most of the prefill time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import ExportError
from shared.modelspec import LORA_INDEX, lora_a_name, lora_b_name

_TWO_GB = 2 * 1024**3 - 64 * 1024**2  # protobuf limit, with headroom for the graph itself
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class LoraSite:
    """One target projection in one layer. ``path`` is the torch module path (dots)."""

    layer: int
    module: str
    path: str
    d_in: int
    d_out: int

    @property
    def node_name(self) -> str:
        """The exporter's scope name: module path with "/" except list indices (``layers.0``)."""
        segments: list[str] = []
        for part in self.path.split("."):
            if part.isdigit() and segments:
                segments[-1] += "." + part
            else:
                segments.append(part)
        return "/" + "/".join(segments) + "/MatMul"


def load_graph(path: Path) -> Any:
    import onnx

    return onnx.load(str(path), load_external_data=True)


def save_graph(model: Any, path: Path) -> None:
    """Check and save; weights go to ``<name>_data`` beside it only above protobuf's 2 GB limit."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    if model.ByteSize() < _TWO_GB:
        onnx.checker.check_model(model)
        onnx.save_model(model, str(path))
    else:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=path.name + "_data",
        )
        onnx.checker.check_model(str(path))


def add_per_row_lora(model: Any, sites: Sequence[LoraSite], bank_dtype: str) -> None:
    """Insert the bank inputs, ``lora_index`` and the LoRA branch of every site (in place)."""
    from onnx import TensorProto, helper

    graph = model.graph
    elem = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}[bank_dtype]
    batch_dim = _batch_dim_name(graph)
    by_name = {node.name: node for node in graph.node}
    weights = {init.name: tuple(init.dims) for init in graph.initializer}
    graph.input.append(helper.make_tensor_value_info(LORA_INDEX, TensorProto.INT64, [batch_dim]))
    inserts: dict[str, list[Any]] = {}
    for site in sites:
        node = by_name.get(site.node_name)
        if node is None or node.op_type != "MatMul":
            raise ExportError(f"no MatMul {site.node_name} in the exported graph for {site.path}")
        shape = weights.get(node.input[1])
        if shape != (site.d_in, site.d_out):
            raise ExportError(f"{site.node_name}: weight shape {shape}, expected {(site.d_in, site.d_out)}")
        a_name, b_name = lora_a_name(site.layer, site.module), lora_b_name(site.layer, site.module)
        # rank axis dynamic: the engine pads to the largest resident rank (<= max_rank), not max_rank
        graph.input.append(helper.make_tensor_value_info(a_name, elem, ["slots", site.d_in, "lora_rank"]))
        graph.input.append(helper.make_tensor_value_info(b_name, elem, ["slots", "lora_rank", site.d_out]))
        inserts[node.name] = _lora_nodes(site, node, a_name, b_name, cast=bank_dtype != "float32")
    _splice(graph, inserts)


def _lora_nodes(site: LoraSite, matmul: Any, a_name: str, b_name: str, *, cast: bool) -> list[Any]:
    from onnx import TensorProto, helper

    p = f"/lora/layers.{site.layer}/{site.module}"
    x, y = matmul.input[0], matmul.output[0]
    nodes = [
        helper.make_node("Gather", [a_name, LORA_INDEX], [f"{p}/A_g"], name=f"{p}/GatherA", axis=0),
        helper.make_node("Gather", [b_name, LORA_INDEX], [f"{p}/B_g"], name=f"{p}/GatherB", axis=0),
    ]
    a_g, b_g = f"{p}/A_g", f"{p}/B_g"
    if cast:
        nodes += [
            helper.make_node("Cast", [a_g], [f"{p}/A_f"], name=f"{p}/CastA", to=TensorProto.FLOAT),
            helper.make_node("Cast", [b_g], [f"{p}/B_f"], name=f"{p}/CastB", to=TensorProto.FLOAT),
        ]
        a_g, b_g = f"{p}/A_f", f"{p}/B_f"
    nodes += [
        helper.make_node("MatMul", [x, a_g], [f"{p}/xA"], name=f"{p}/MatMulA"),  # [batch, seq, R]
        helper.make_node(
            "MatMul", [f"{p}/xA", b_g], [f"{p}/xAB"], name=f"{p}/MatMulB"
        ),  # [batch, seq, d_out]
        helper.make_node("Add", [y, f"{p}/xAB"], [f"{y}_lora"], name=f"{p}/Add"),
    ]
    return nodes


def _splice(graph: Any, inserts: dict[str, list[Any]]) -> None:
    """Put each site's nodes right after its MatMul and point the MatMul's consumers at y + LoRA."""
    renamed = {
        graph_node.output[0]: f"{graph_node.output[0]}_lora"
        for graph_node in graph.node
        if graph_node.name in inserts
    }
    ordered: list[Any] = []
    for node in graph.node:
        if node.name.startswith("/lora/"):
            ordered.append(node)
            continue
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
        ordered.append(node)
        ordered.extend(inserts.get(node.name, []))
    for out in graph.output:
        if out.name in renamed:
            raise ExportError(f"a LoRA target's output {out.name} is a graph output")
    del graph.node[:]
    graph.node.extend(ordered)


def slice_last_logits(model: Any) -> None:
    """Feed the lm_head MatMul only the last position: logits [batch, 1, vocab] (in place)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    producer = next((n for n in graph.node if "logits" in n.output), None)
    if producer is None or producer.op_type != "MatMul":
        kind = producer.op_type if producer is not None else "nothing"
        raise ExportError(f"logits are produced by {kind}, expected the lm_head MatMul")
    import numpy as np

    hidden = producer.input[0]
    args = []
    for name, value in (("starts", -1), ("ends", _INT64_MAX), ("axes", 1)):
        args.append(f"/lm_head/last_{name}")
        graph.initializer.append(numpy_helper.from_array(np.array([value], dtype=np.int64), args[-1]))
    last = f"{hidden}_last"  # [batch, 1, hidden]
    node = helper.make_node("Slice", [hidden, *args], [last], name="/lm_head/SliceLast")
    producer.input[0] = last
    nodes = list(graph.node)
    nodes.insert(nodes.index(producer), node)
    del graph.node[:]
    graph.node.extend(nodes)
    logits = next(o for o in graph.output if o.name == "logits")
    dims = logits.type.tensor_type.shape.dim
    if len(dims) == 3:
        dims[1].ClearField("dim_param")
        dims[1].dim_value = 1
    for info in list(graph.value_info):
        if info.name == "logits":
            graph.value_info.remove(info)


def replace_weights(model: Any, updates: dict[str, Any]) -> None:
    """Overwrite MatMul weight initializers by node name (used to build merged per-tenant graphs)."""
    from onnx import numpy_helper

    by_name = {node.name: node for node in model.graph.node}
    inits = {init.name: init for init in model.graph.initializer}
    for node_name, array in updates.items():
        node = by_name.get(node_name)
        if node is None or node.input[1] not in inits:
            raise ExportError(f"no MatMul with an initializer weight named {node_name}")
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(array, node.input[1]))


def matmul_weight(model: Any, node_name: str) -> Any:
    """The weight initializer of a MatMul node as a numpy array [d_in, d_out]."""
    from onnx import numpy_helper

    node = next((n for n in model.graph.node if n.name == node_name), None)
    init = next((i for i in model.graph.initializer if node is not None and i.name == node.input[1]), None)
    if init is None:
        raise ExportError(f"no MatMul with an initializer weight named {node_name}")
    return numpy_helper.to_array(init)


def _batch_dim_name(graph: Any) -> str:
    for graph_input in graph.input:
        if graph_input.name == "input_ids":
            dim = graph_input.type.tensor_type.shape.dim[0]
            return str(dim.dim_param) or "batch_size"
    raise ExportError("the exported graph has no input_ids input")
