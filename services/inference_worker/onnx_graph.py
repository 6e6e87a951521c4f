"""A GPT-2 checkpoint as an ONNX graph for ONNX Runtime, built for decoding on CPU.

Why the graph is written here rather than traced from transformers: the traced graph
concatenates the whole key/value cache into a new tensor at every step and every layer (at 8
sequences that copy took a third of each step), and ONNX Runtime does not fuse transformers'
attention into its own. Written by hand, each layer's attention is one `GroupQueryAttention`
node (com.microsoft, with as many key/value heads as query heads, which is GPT-2's plain
multi-head attention) that writes the new keys and values in place into a cache buffer the
caller owns and allocates once per batch. Prompts of different lengths are right-padded when
prefilled together; while decoding `seqlens_k` gives each row's own length, so one batch mixes
sequences of any lengths.

Inputs: `input_ids` and `position_ids` [batch, seq] int64, `seqlens_k` [batch] int32 (tokens
in the cache after this step, minus one), `total_sequence_length` [1] int32 (the step's longest
row: the padded prompt length when prefilling, else max(seqlens_k)+1), `logits_index` [batch]
int64 (the row of the flattened [batch*seq] hidden states to score: each row's last real
token), and per layer `past_key_{i}`/`past_value_{i}` [batch, heads, max_len, head_size]
(int8 in int8 graphs, or float16 with `kv_cache="float16"`; float32 in float32 graphs).
Outputs: `logits` [batch, vocab] and `present_key_{i}`/`present_value_{i}` (bound to the same
buffers as the pasts, so nothing is copied).

int8: weight matrices (and the token embedding table) are stored as int8 with one scale per
tensor (symmetric, |max| -> 127), and each matmul is ONNX Runtime's `DynamicQuantizeMatMul`,
which quantizes the activations at every run (one scale for the whole batch) and runs VNNI int8
kernels: the graph ONNX Runtime's own dynamic quantization produces, written directly. Built
that way, one weight at a time straight into the data file, converting 355M peaks at the
checkpoint's size instead of the 5-8 GB that building float32 and then quantizing took (which
would not fit a 1.3B model in 24 GB). Per-channel scales measured slower at 8 sequences (178
against 198 tokens/s); parity with transformers is tested (tests/inference/test_backend_parity.py).

The int8 graphs' key/value cache is int8 too (a quarter of float32's memory per token, half of
float16's): GroupQueryAttention quantizes each new key and value with a fixed scale per layer, head
and channel and reads the cache back through the same scales, the query staying float32. The
scales are calibrated at conversion (`calibrate_cache`): the largest |key| and |value| of each
channel over dialogs in the model's own prompt format, continued by the model itself, and over
every position of its context. A value past its channel's calibrated range is clipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from shared.progress import LoggedProgress

GRAPH_FILE = "model.onnx"
# GPT-2's activations as com.microsoft ops that take the bias as a second input
ACTIVATIONS = {"gelu_new": "FastGelu", "gelu_pytorch_tanh": "FastGelu", "gelu": "BiasGelu"}


class UnsupportedModel(ValueError):
    """The checkpoint is not a GPT-2 this graph can express."""


def load_gpt2(model_dir: Path):
    """The config and the float32 torch model of a GPT-2 checkpoint (safetensors or .bin)."""
    import torch
    from transformers import GPT2LMHeadModel

    config = json.loads((Path(model_dir) / "config.json").read_text())
    if config.get("model_type") != "gpt2":
        raise UnsupportedModel(
            f"the ONNX Runtime backend builds GPT-2 graphs; this checkpoint is {config.get('model_type')!r}"
        )
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"):
        if config.get(flag):
            raise UnsupportedModel(f"GPT-2 with {flag}=true is not supported by the ONNX Runtime backend")
    if config.get("activation_function", "gelu_new") not in ACTIVATIONS:
        raise UnsupportedModel(
            f"activation {config.get('activation_function')!r} is not supported (one of {sorted(ACTIVATIONS)})"
        )
    return config, GPT2LMHeadModel.from_pretrained(model_dir, dtype=torch.float32, low_cpu_mem_usage=True).eval()


def gpt2_weights(model) -> dict[str, np.ndarray]:
    """The model's float32 weights by their names in `transformer` (and `lm_head.weight`)."""
    weights = {name: tensor.detach().numpy() for name, tensor in model.transformer.state_dict().items()}
    weights["lm_head.weight"] = model.lm_head.weight.detach().numpy()  # tied to wte in GPT-2, not always
    return weights


# Dialogs (newest turn first) whose prompts the model continues for the cache's calibration: the
# model's own format and words, whatever its training set was.
CALIBRATION_DIALOGS = (
    ["привет анон"],
    ["почему двач уже не тот?", "раньше было лучше"],
    ["что посоветуешь почитать на выходных", "скучно, анон"],
    ["кто-нибудь знает, как починить ноутбук после чая", "залил клавиатуру"],
    ["сколько сейчас стоит видеокарта", "цены опять выросли", "майнеры всё скупили"],
    ["Мам, я в телевизоре!"],
    ["what do you think about it"],
    ["погода сегодня отличная", "пойду гулять", "а я дома сижу, работаю 2 часа без перерыва (((("],
)


def calibrate_cache(model, codec, new_tokens: int = 48, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each layer's (key scale, value scale), [heads, head_size]: |max| / 127 of each channel over
    the calibration dialogs' prompts, each continued by the model (sampled, top-k 50), then all of
    them joined into one sequence as long as the model's context, so that every position is seen."""
    import torch

    config = model.config
    heads, width = config.n_head, config.n_embd
    rows = int(config.vocab_size)
    banned = [[i] for i in codec.banned_ids if i < rows]
    torch.manual_seed(seed)  # generate() samples from torch's global generator
    texts: list[list[int]] = []
    with torch.inference_mode():
        for dialog in LoggedProgress(CALIBRATION_DIALOGS, desc="cache calibration", unit="dialog"):
            prompt = torch.tensor([codec.prompt(dialog)])
            sampled = model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                do_sample=True,
                top_k=50,
                max_new_tokens=new_tokens,
                pad_token_id=codec.eos_id if codec.eos_id < rows else 0,
                bad_words_ids=banned or None,
            )
            texts.append([t for t in sampled[0].tolist() if t < rows])
        context = int(getattr(config, "n_positions", 1024))
        joined = [t for _ in range(-(-context // sum(map(len, texts)))) for text in texts for t in text][:context]
        amax = [np.zeros((2, heads, width // heads), dtype=np.float32) for _ in range(config.n_layer)]
        for ids in [*texts, joined]:
            hidden = model.transformer(torch.tensor([ids]), output_hidden_states=True).hidden_states
            for i, block in enumerate(model.transformer.h):
                _, key, value = block.attn.c_attn(block.ln_1(hidden[i])).split(width, dim=2)
                for kind, x in enumerate((key, value)):  # [1, seq, width] -> [heads, head_size]
                    seen = x[0].abs().amax(dim=0).reshape(heads, -1).numpy()
                    np.maximum(amax[i][kind], seen, out=amax[i][kind])
    return [(np.maximum(k, 1e-6) / 127.0, np.maximum(v, 1e-6) / 127.0) for k, v in amax]


class _DataFile:
    """Initializers written one by one into the external data file, so that no second copy of
    the weights is ever held in memory (protobuf also caps a model at 2 GB)."""

    def __init__(self, path: Path, file: BinaryIO):
        self.path = Path(path)
        self.file = file
        self.tensors: list = []

    def add(self, name: str, array: np.ndarray | np.generic) -> str:
        import onnx
        from onnx import helper, numpy_helper

        array = np.ascontiguousarray(array)
        if array.nbytes < 1024:  # shapes, scales, zero points: inline, where shape inference reads them
            self.tensors.append(numpy_helper.from_array(array, name))
            return name
        offset = self.file.tell()
        self.file.write(array.tobytes())
        self.file.write(b"\0" * (-self.file.tell() % 64))  # aligned, so ONNX Runtime can map it
        tensor = onnx.TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape)
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", self.path.name), ("offset", offset), ("length", array.nbytes)):
            tensor.external_data.add(key=key, value=str(value))
        self.tensors.append(tensor)
        return name


def quantize_int8(weight: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """Symmetric per-tensor int8: weight ~ q * scale."""
    scale = np.float32(max(float(np.abs(weight).max()), 1e-12) / 127.0)
    return np.clip(np.rint(weight / scale), -127, 127).astype(np.int8), scale


class _Graph:
    """The decoder's nodes as they are added, its weights streamed into `data`."""

    def __init__(
        self,
        config: dict,
        weights: dict[str, np.ndarray],
        quantization: str,
        data: _DataFile,
        cache_scales: list[tuple[np.ndarray, np.ndarray]] | None = None,
    ):
        from onnx import TensorProto

        self.weights, self.data = weights, data
        self.heads = config["n_head"]
        self.eps = float(config.get("layer_norm_epsilon", 1e-5))
        self.int8 = quantization == "int8"
        # int8 graphs keep the key/value cache in int8 when given its scales, else in float16;
        # float32 ones in float32, where greedy tokens must equal transformers' exactly.
        self.cache_scales = cache_scales if self.int8 else None
        self.cache_type = (
            TensorProto.FLOAT if not self.int8 else TensorProto.INT8 if self.cache_scales else TensorProto.FLOAT16
        )
        self.nodes: list = []

    def node(self, op: str, inputs: list[str], output: str, domain: str = "", **attrs) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], name=output, domain=domain, **attrs))
        return output

    def matmul(self, x: str, weight: np.ndarray, name: str, bias: np.ndarray | None = None) -> str:
        """x @ weight (+ bias); GPT-2's Conv1D stores weights [in, out]."""
        data = self.data
        if self.int8:
            q, scale = quantize_int8(weight)
            inputs = [
                x,
                data.add(f"{name}.weight", q),
                data.add(f"{name}.scale", scale),
                data.add(f"{name}.zero", np.int8(0)),
            ]
            if bias is not None:
                inputs.append(data.add(f"{name}.bias", bias))
            return self.node("DynamicQuantizeMatMul", inputs, f"{name}.out", domain="com.microsoft")
        y = self.node("MatMul", [x, data.add(f"{name}.weight", weight)], f"{name}.matmul")
        return y if bias is None else self.node("Add", [y, data.add(f"{name}.bias", bias)], f"{name}.out")

    def embedding(self, table: np.ndarray, ids: str, name: str) -> str:
        data = self.data
        if self.int8:
            q, scale = quantize_int8(table)
            rows = self.node("Gather", [data.add(f"{name}.weight", q), ids], f"{name}.rows")
            return self.node(
                "DequantizeLinear",
                [rows, data.add(f"{name}.scale", scale), data.add(f"{name}.zero", np.int8(0))],
                f"{name}.out",
            )
        return self.node("Gather", [data.add(f"{name}.weight", table), ids], f"{name}.out")

    def layer_norm(self, x: str, prefix: str, name: str) -> str:
        return self.node(
            "LayerNormalization",
            [
                x,
                self.data.add(f"{name}.weight", self.weights[f"{prefix}.weight"]),
                self.data.add(f"{name}.bias", self.weights[f"{prefix}.bias"]),
            ],
            f"{name}.out",
            axis=-1,
            epsilon=self.eps,
        )

    def attention(self, i: int, qkv: str, output: str) -> str:
        """GroupQueryAttention on layer i's cache (which it writes in place). An int8 cache is
        quantized by the op with fixed per-channel scales; a float16 one needs float16 inputs
        (the op then takes one type for all of them), with casts around it."""
        from onnx import TensorProto, helper

        inputs = [qkv, "", "", f"past_key_{i}", f"past_value_{i}", "seqlens_k", "total_sequence_length"]
        attn, attrs = output, dict[str, Any]()
        if self.cache_scales:
            k_scale, v_scale = self.cache_scales[i]
            shape = (1, self.heads, 1, k_scale.shape[-1])  # broadcast over batch and positions
            inputs += ["", "", "", "", ""]  # cos/sin caches, position ids, bias, head sink: unused
            inputs += [
                self.data.add(f"l{i}.k_scale", k_scale.reshape(shape).astype(np.float32)),
                self.data.add(f"l{i}.v_scale", v_scale.reshape(shape).astype(np.float32)),
            ]
            attrs = {"k_quant_type": "PER_CHANNEL", "v_quant_type": "PER_CHANNEL", "kv_cache_bit_width": 8}
        elif self.cache_type == TensorProto.FLOAT16:
            inputs[0] = self.node("Cast", [qkv], f"l{i}.qkv16", to=TensorProto.FLOAT16)
            attn = f"l{i}.attn16"
        self.nodes.append(
            helper.make_node(
                "GroupQueryAttention",
                inputs,
                [attn, f"present_key_{i}", f"present_value_{i}"],
                name=attn,
                domain="com.microsoft",
                num_heads=self.heads,
                kv_num_heads=self.heads,
                **attrs,
            )
        )
        return output if attn == output else self.node("Cast", [attn], output, to=TensorProto.FLOAT)

    def block(self, i: int, hidden: str, activation: str) -> str:
        """GPT-2's layer i: attention and MLP, each after a layer norm, each added to `hidden`."""
        p, w = f"h.{i}", self.weights
        attn_in = self.layer_norm(hidden, f"{p}.ln_1", f"l{i}.ln_1")
        # packed [q | k | v], as GroupQueryAttention takes it
        qkv = self.matmul(attn_in, w[f"{p}.attn.c_attn.weight"], f"l{i}.qkv", w[f"{p}.attn.c_attn.bias"])
        attn = self.attention(i, qkv, f"l{i}.attn")
        attn_out = self.matmul(attn, w[f"{p}.attn.c_proj.weight"], f"l{i}.attn_proj", w[f"{p}.attn.c_proj.bias"])
        hidden = self.node("Add", [hidden, attn_out], f"l{i}.resid_1")
        mlp_in = self.layer_norm(hidden, f"{p}.ln_2", f"l{i}.ln_2")
        fc = self.matmul(mlp_in, w[f"{p}.mlp.c_fc.weight"], f"l{i}.fc")
        act = self.node(
            activation,
            [fc, self.data.add(f"l{i}.fc.bias", w[f"{p}.mlp.c_fc.bias"])],
            f"l{i}.act",
            domain="com.microsoft",
        )
        mlp_out = self.matmul(act, w[f"{p}.mlp.c_proj.weight"], f"l{i}.mlp_proj", w[f"{p}.mlp.c_proj.bias"])
        return self.node("Add", [hidden, mlp_out], f"l{i}.resid_2")


def build_graph(
    config: dict,
    weights: dict[str, np.ndarray],
    quantization: str,
    data: _DataFile,
    cache_scales: list[tuple[np.ndarray, np.ndarray]] | None = None,
):
    """The onnx.ModelProto of the decoder (see the module's docstring); weights go to `data`. An
    int8 graph keeps an int8 cache when given `cache_scales` (`calibrate_cache`), else float16."""
    from onnx import helper

    layers, width, heads = config["n_layer"], config["n_embd"], config["n_head"]
    head_size = width // heads
    if head_size * heads != width or head_size % 8:
        raise UnsupportedModel(f"head size {width}/{heads} must be a whole multiple of 8")
    activation = ACTIVATIONS[config.get("activation_function", "gelu_new")]
    vocab = weights["wte.weight"].shape[0]
    g = _Graph(config, weights, quantization, data, cache_scales)

    tokens = g.embedding(weights["wte.weight"], "input_ids", "wte")
    positions = g.node("Gather", [data.add("wpe", weights["wpe.weight"]), "position_ids"], "embed.positions")
    hidden = g.node("Add", [tokens, positions], "embed.out")
    for i in LoggedProgress(range(layers), desc=f"{quantization} conversion", unit="layer"):
        hidden = g.block(i, hidden, activation)
    # Score only each row's last real token: [batch*seq, width] rows picked by logits_index.
    flat = g.node("Reshape", [hidden, data.add("flat_shape", np.array([-1, width], dtype=np.int64))], "final.flat")
    last = g.node("Gather", [flat, "logits_index"], "final.last", axis=0)
    normed = g.layer_norm(last, "ln_f", "final.ln")
    scores = g.matmul(normed, weights["lm_head.weight"].T, "lm_head")
    g.node("Identity", [scores], "logits")

    graph_inputs, graph_outputs = _graph_io(layers, heads, head_size, vocab, g.cache_type)
    graph = helper.make_graph(g.nodes, "gpt2-decoder", graph_inputs, graph_outputs, data.tensors)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
        producer_name="dvach-bot",
    )
    model.ir_version = 8
    return model


def _graph_io(layers: int, heads: int, head_size: int, vocab: int, cache_type: int) -> tuple[list, list]:
    """The graph's inputs and outputs: the step's tokens, and each layer's cache buffer in and out
    (of `cache_type`, an onnx TensorProto data type)."""
    from onnx import TensorProto, helper

    cache_shape: list[str | int] = ["batch", heads, "max_len", head_size]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["batch"]),
        helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, [1]),
        helper.make_tensor_value_info("logits_index", TensorProto.INT64, ["batch"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", vocab])]
    for i in range(layers):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_{kind}_{i}", cache_type, cache_shape))
            outputs.append(helper.make_tensor_value_info(f"present_{kind}_{i}", cache_type, cache_shape))
    return inputs, outputs


def write_model(model_dir: Path, out_dir: Path, quantization: str, codec, kv_cache: str = "int8") -> Path:
    """Build the graph of `model_dir` into `out_dir` (`model.onnx` + `model.onnx.data`); an int8
    graph's cache is `kv_cache` (calibrated on prompts `codec` writes when int8)."""
    import onnx

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config, torch_model = load_gpt2(model_dir)
    scales = calibrate_cache(torch_model, codec) if quantization == "int8" and kv_cache == "int8" else None
    weights = gpt2_weights(torch_model)
    del torch_model
    data_path = out_dir / (GRAPH_FILE + ".data")
    with open(data_path, "wb") as file:
        model = build_graph(config, weights, quantization, _DataFile(data_path, file), scales)
    onnx.save(model, str(out_dir / GRAPH_FILE))
    return out_dir / GRAPH_FILE
