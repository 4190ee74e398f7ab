"""dlib's face-recognition ResNet, read from its own model file and run by onnxruntime.

The 128-d encoder (``dlib_face_recognition_resnet_model_v1.dat``, public domain, shipped
by the ``face_recognition_models`` package) is a 29-layer ResNet. dlib runs it at ~100 ms
per face on this project's 2-core machines (the ``dlib-bin`` wheel is built without
AVX); the same network in onnxruntime takes a few milliseconds, with the same weights
and the same output (float32 rounding apart: ``tests/pipeline/recognition``).

Nothing is downloaded and no converted model is stored: :func:`load_network` reads the
layers from the ``.dat`` file in the order dlib serialised them (input to output) and
:func:`build_onnx` writes the equivalent ONNX graph in memory, in well under a second, when
a worker starts.

The network, as dlib defines it (``dnn_face_recognition_ex.cpp``)::

    input 150x150 RGB, (pixel - channel mean) / 256
    conv 7x7/2 (32) -> affine -> relu -> max pool 3x3/2
    14 residual blocks: conv 3x3/s -> affine -> relu -> conv 3x3/1 -> affine, added to
      the block's input (or, where the block strides by 2, to a 2x2/2 average pool of
      it, zero-padded to the larger size: dlib's ``add_prev``), then relu
    global average pool -> 128-d fully connected, no bias

The reader checks the file's structure as it goes and raises :class:`DlibModelError` on
anything it does not know, so a different model file fails loudly, never silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# the layer names in dlib's serialised network that the reader understands
_LAYER_NAMES = (
    b"input_rgb_image_sized",
    b"con_4",
    b"affine_",
    b"relu_1",
    b"max_pool_2",
    b"avg_pool_2",
    b"add_prev_1",
    b"fc_2",
)


class DlibModelError(ValueError):
    """The model file is not the network this reader knows."""


@dataclass
class Layer:
    kind: str  # input, conv, affine, relu, max_pool, avg_pool, add_prev, fc
    params: dict[str, Any] = field(default_factory=dict)


class _Reader:
    """dlib's serialisation: ints as a size byte (0x80: negative) + little-endian bytes,
    floats as mantissa + exponent ints, tensors (version 2) as raw little-endian float32."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def int(self) -> int:
        head = self.data[self.pos]
        size, negative = head & 0x0F, head & 0x80
        if size > 8:
            raise DlibModelError(f"bad integer at byte {self.pos}")
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if negative else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        return float(np.ldexp(float(mantissa), exponent))

    def string(self) -> bytes:
        n = self.int()
        s = self.data[self.pos : self.pos + n]
        self.pos += n
        return s

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise DlibModelError(f"tensor version {version} at byte {self.pos} (expected 2)")
        n, k, nr, nc = self.int(), self.int(), self.int(), self.int()
        count = n * k * nr * nc
        out = np.frombuffer(self.data, "<f4", count, self.pos).astype(np.float32)
        self.pos += 4 * count
        return out


def load_network(path: str | Path) -> list[Layer]:
    """The layers of dlib's face-recognition ResNet from its ``.dat`` file, input first."""
    data = Path(path).read_bytes()
    layers: list[Layer] = []
    pos = 0
    names = re.compile(b"|".join(re.escape(n) for n in _LAYER_NAMES))
    while (found := names.search(data, pos)) is not None:
        # the next layer name (a dlib string: its length, then its bytes)
        start, name = found.start(), found.group()
        r = _Reader(data, found.end())
        if name == b"input_rgb_image_sized":
            mean = [r.float() for _ in range(3)]
            nr, nc = r.int(), r.int()
            layers.append(Layer("input", {"mean": mean, "size": (nr, nc)}))
        elif name == b"con_4":
            params = r.tensor()
            filters, nr, nc = r.int(), r.int(), r.int()
            sy, sx, py, px = r.int(), r.int(), r.int(), r.int()
            channels = (params.size - filters) // (filters * nr * nc)
            if channels * filters * nr * nc + filters != params.size:
                raise DlibModelError(f"conv layer at byte {start}: {params.size} parameters")
            w = params[: channels * filters * nr * nc].reshape(filters, channels, nr, nc)
            b = params[channels * filters * nr * nc :]
            layers.append(
                Layer("conv", {"w": w, "b": b, "stride": (sy, sx), "pad": (py, px)})
            )
        elif name == b"affine_":
            params = r.tensor()
            k = params.size // 2
            layers.append(Layer("affine", {"gamma": params[:k], "beta": params[k:]}))
        elif name == b"relu_1":
            layers.append(Layer("relu"))
        elif name in (b"max_pool_2", b"avg_pool_2"):
            nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
            kind = "max_pool" if name == b"max_pool_2" else "avg_pool"
            layers.append(
                Layer(kind, {"kernel": (nr, nc), "stride": (sy, sx), "pad": (py, px)})
            )
        elif name == b"add_prev_1":
            layers.append(Layer("add_prev"))
        elif name == b"fc_2":
            outputs, inputs = r.int(), r.int()
            params = r.tensor()
            if params.size != outputs * inputs:
                raise DlibModelError(f"fc layer: {params.size} parameters, expected "
                                     f"{inputs}x{outputs} without bias")  # fmt: skip
            layers.append(Layer("fc", {"w": params.reshape(inputs, outputs)}))
        pos = r.pos
    _check(layers)
    return layers


def _check(layers: list[Layer]) -> None:
    kinds = [layer.kind for layer in layers]
    if not kinds or kinds[0] != "input" or kinds[-1] != "fc" or kinds.count("fc") != 1:
        raise DlibModelError(f"not dlib's face-recognition ResNet: layers {kinds[:6]}...")
    if kinds[1:5] != ["conv", "affine", "relu", "max_pool"]:
        raise DlibModelError(f"unexpected stem: {kinds[1:5]}")


def _blocks(layers: list[Layer]) -> tuple[list[Layer], list[list[Layer]], Layer]:
    """The stem (conv, affine, relu, max pool), the residual blocks, the fc layer."""
    stem, body = layers[1:5], layers[5:]
    if body[-2].kind != "avg_pool" or body[-2].params["kernel"] != (0, 0):
        raise DlibModelError("expected a global average pool before the fc layer")
    fc, body = body[-1], body[:-2]
    blocks, cur = [], []
    for layer in body:
        cur.append(layer)
        if layer.kind == "relu" and cur[-2:-1] and cur[-2].kind == "add_prev":
            shape = [x.kind for x in cur]
            if shape not in (
                ["conv", "affine", "relu", "conv", "affine", "add_prev", "relu"],
                ["conv", "affine", "relu", "conv", "affine", "avg_pool", "add_prev", "relu"],
            ):
                raise DlibModelError(f"unexpected residual block: {shape}")
            blocks.append(cur)
            cur = []
    if cur:
        raise DlibModelError(f"trailing layers: {[x.kind for x in cur]}")
    return stem, blocks, fc


def build_onnx(layers: list[Layer]) -> bytes:
    """The network as a serialised ONNX model: input ``chips`` (N, 150, 150, 3) uint8 RGB
    face chips, output ``encodings`` (N, 128) float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    inits: list[Any] = []
    counter = [0]

    def name(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}{counter[0]}"

    def const(arr: np.ndarray, prefix: str = "c") -> str:
        n = name(prefix)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), n))
        return n

    def node(op: str, inputs: list[str], **attrs: Any) -> str:
        out = name(op.lower())
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    inp = layers[0]
    rows, cols = inp.params["size"]
    # (N, H, W, 3) uint8 -> (N, 3, H, W) float, (x - mean) / 256 as dlib's input layer
    x = node("Cast", ["chips"], to=TensorProto.FLOAT)
    x = node("Transpose", [x], perm=[0, 3, 1, 2])
    mean = np.asarray(inp.params["mean"], np.float32).reshape(1, 3, 1, 1)
    x = node("Sub", [x, const(mean)])
    x = node("Mul", [x, const(np.asarray(1.0 / 256.0, np.float32))])
    shape = [3, rows, cols]  # (C, H, W), tracked to size dlib's zero-padded adds

    def conv(x: str, layer: Layer, shape: list[int]) -> tuple[str, list[int]]:
        p = layer.params
        # dlib's conv + affine; the affine is folded into the conv's weights and bias
        w, b = p["w"], p["b"]
        (sy, sx), (py, px) = p["stride"], p["pad"]
        out = node(
            "Conv", [x, const(w), const(b)], strides=[sy, sx], pads=[py, px, py, px],
            kernel_shape=list(w.shape[2:]),
        )  # fmt: skip
        kh, kw = w.shape[2:]
        return out, [
            w.shape[0], (shape[1] + 2 * py - kh) // sy + 1, (shape[2] + 2 * px - kw) // sx + 1
        ]  # fmt: skip

    def fold(conv_layer: Layer, affine: Layer) -> Layer:
        g, beta = affine.params["gamma"], affine.params["beta"]
        p = dict(conv_layer.params)
        p["w"] = (p["w"] * g[:, None, None, None]).astype(np.float32)
        p["b"] = (p["b"] * g + beta).astype(np.float32)
        return Layer("conv", p)

    def pad_to(x: str, have: list[int], want: list[int]) -> str:
        if have == want:
            return x
        pads = [0, 0, 0, 0, 0, want[0] - have[0], want[1] - have[1], want[2] - have[2]]
        return node("Pad", [x, const(np.asarray(pads, np.int64), "pads")], mode="constant")

    def pool(op: str, x: str, layer: Layer, shape: list[int]) -> tuple[str, list[int]]:
        p = layer.params
        (kh, kw), (sy, sx), (py, px) = p["kernel"], p["stride"], p["pad"]
        out = node(op, [x], kernel_shape=[kh, kw], strides=[sy, sx], pads=[py, px, py, px])
        return out, [
            shape[0], (shape[1] + 2 * py - kh) // sy + 1, (shape[2] + 2 * px - kw) // sx + 1
        ]  # fmt: skip

    c, a, _, first_pool = layers[1:5]
    x, shape = conv(x, fold(c, a), shape)
    x = node("Relu", [x])
    x, shape = pool("MaxPool", x, first_pool, shape)
    _, blocks, fc = _blocks(layers)
    for blk in blocks:
        c1, a1, _, c2, a2 = blk[:5]
        y, yshape = conv(x, fold(c1, a1), shape)
        y = node("Relu", [y])
        y, yshape = conv(y, fold(c2, a2), yshape)
        if blk[5].kind == "avg_pool":
            skip, sshape = pool("AveragePool", x, blk[5], shape)
        else:
            skip, sshape = x, shape
        # dlib's add_prev: the larger of the two shapes, each zero-padded at the end
        out = [max(a, b) for a, b in zip(yshape, sshape, strict=True)]
        x = node("Add", [pad_to(y, yshape, out), pad_to(skip, sshape, out)])
        x = node("Relu", [x])
        shape = out
    x = node("GlobalAveragePool", [x])
    x = node("Flatten", [x], axis=1)
    nodes.append(helper.make_node("MatMul", [x, const(fc.params["w"])], ["encodings"]))
    graph = helper.make_graph(
        nodes,
        "dlib_face_recognition_resnet_v1",
        [helper.make_tensor_value_info("chips", TensorProto.UINT8, ["n", rows, cols, 3])],
        [helper.make_tensor_value_info("encodings", TensorProto.FLOAT, ["n", 128])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _release_memory() -> None:
    """Give the heap freed after the build back to the system (glibc's ``malloc_trim``):
    the weights pass through several copies while the graph is built, and without this a
    worker keeps ~80 MiB it never uses again. Does nothing where there is no glibc."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class OnnxResNet:
    """The encoder network in onnxruntime: ``(N, 150, 150, 3)`` uint8 chips -> ``(N, 128)``.

    ``threads``: onnxruntime's intra-op threads (1 by default: a worker is one process
    among several on a machine, each given its own core by the scheduler)."""

    def __init__(self, model_path: str | Path | None = None, threads: int = 1) -> None:
        import onnxruntime as ort

        if model_path is None:
            import face_recognition_models as frm

            model_path = frm.face_recognition_model_location()
        layers = load_network(model_path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.size = layers[0].params["size"]
        self._session = ort.InferenceSession(
            build_onnx(layers), opts, providers=["CPUExecutionProvider"]
        )
        del layers
        _release_memory()  # the build's copies of the weights (~100 MiB)

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        chips = np.ascontiguousarray(chips, dtype=np.uint8)
        if chips.ndim == 3:
            chips = chips[None]
        return self._session.run(["encodings"], {"chips": chips})[0]
